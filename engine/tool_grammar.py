"""The grammar that keeps tool calls parseable: XGrammar structural tags (openvino_genai 2026.4).

Each offered tool becomes a tag: the format's opening text with the tool's name written out,
then a JSON object that validates against the tool's parameters schema, then the closing text
(tool_parsers.CallSyntax). So a constrained call always parses, names an offered tool, and
has arguments its schema accepts.

- "required" / a tool's name: the whole answer is one or more calls (one with
  parallel_tool_calls=False or a named tool): tags with the format's separator, at least one.
- "auto": free text until the model writes the format's trigger (`<tool_call>` for Hermes);
  from there the rest of the call is constrained, then free text again (triggered tags).

The grammar goes to genai as XGrammar's structural-tag JSON text, which also serves as the
compile cache's key (structured.py). Pythonic calls, whose arguments are Python keywords and
not a JSON object, get theirs from tool_grammar_pythonic.py.
"""

from __future__ import annotations

import json

from .tool_calls import Tool
from .tool_grammar_pythonic import pythonic_format
from .tool_parsers import CallSyntax


def tool_grammar(tools: tuple[Tool, ...], choice: str, parallel: bool, syntax: CallSyntax | None) -> str | None:
    """The structural-tag JSON text for these tools, or None (no tools offered, or no syntax)."""
    if syntax is None or not tools or choice == "none":
        return None
    if syntax.arguments == "python":
        return json.dumps({"type": "structural_tag", "format": pythonic_format(tools, choice, parallel)},
                          ensure_ascii=False)
    offered = tools if choice in ("auto", "required") else tuple(t for t in tools if t.name == choice)
    tags = [_tag(syntax.begin(t.name), _schema(t), syntax.end) for t in offered]
    one_call = not parallel or choice not in ("auto", "required")
    if choice == "auto":
        if syntax.prefix:  # the calls sit in one wrapper (functools[...]): the trigger opens the wrapper
            wrapper = _tag(syntax.prefix, _calls(tags, syntax.separator, one_call), syntax.suffix)
            fmt = _triggered([syntax.trigger], [wrapper], stop_after_first=True)
        else:
            fmt = _triggered([syntax.trigger], tags, stop_after_first=one_call)
    else:
        calls = _calls(tags, syntax.separator, one_call)
        fmt = _tag(syntax.prefix, calls, syntax.suffix) if syntax.prefix else calls
    return json.dumps({"type": "structural_tag", "format": fmt}, ensure_ascii=False)


def _schema(tool: Tool) -> dict:
    return {"type": "json_schema", "json_schema": tool.parameters or {"type": "object"}}


def _tag(begin: str, content: dict, end: str) -> dict:
    return {"type": "tag", "begin": begin, "content": content, "end": end}


def _calls(tags: list[dict], separator: str, one: bool) -> dict:
    return {"type": "tags_with_separator", "tags": tags, "separator": separator, "at_least_one": True,
            "stop_after_first": one}


def _triggered(triggers: list[str], tags: list[dict], stop_after_first: bool) -> dict:
    return {"type": "triggered_tags", "triggers": triggers, "tags": tags, "at_least_one": False,
            "stop_after_first": stop_after_first}
