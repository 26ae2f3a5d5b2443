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

from .structural_tags import json_schema, structural_tag, tag, tags_with_separator, triggered_tags
from .tool_calls import Tool
from .tool_grammar_pythonic import pythonic_format
from .tool_parsers import CallSyntax


def tool_grammar(tools: tuple[Tool, ...], choice: str, parallel: bool, syntax: CallSyntax | None) -> str | None:
    """The structural-tag JSON text for these tools, or None (no tools offered, or no syntax)."""
    if syntax is None or not tools or choice == "none":
        return None
    if syntax.arguments == "python":
        return structural_tag(pythonic_format(tools, choice, parallel, syntax))
    offered = tools if choice in ("auto", "required") else tuple(t for t in tools if t.name == choice)
    tags = [tag(syntax.begin(t.name), json_schema(t.parameters or {"type": "object"}), syntax.end) for t in offered]
    one_call = not parallel or choice not in ("auto", "required")
    if choice == "auto":
        if syntax.prefix:  # the calls sit in one wrapper (functools[...]): the trigger opens the wrapper
            calls = tags_with_separator(tags, syntax.separator, at_least_one=True, stop_after_first=one_call)
            fmt = triggered_tags([syntax.trigger], [tag(syntax.prefix, calls, syntax.suffix)], stop_after_first=True)
        else:
            fmt = triggered_tags([syntax.trigger], tags, stop_after_first=one_call)
    else:
        calls = tags_with_separator(tags, syntax.separator, at_least_one=True, stop_after_first=one_call)
        fmt = tag(syntax.prefix, calls, syntax.suffix) if syntax.prefix else calls
    return structural_tag(fmt)
