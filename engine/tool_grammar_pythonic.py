"""The grammar of pythonic tool calls, `[get_weather(city="Paris", days=3)]` (Llama 3.2, Llama 4).

Their arguments are keyword arguments, not one JSON object, so each tool's call is built from its
parameters' schema: `name=` then a value that validates against that parameter's own schema; the
required parameters first, in the schema's order, then each optional one or not, in order. Values
are written as JSON (the pythonic parser reads `true`, `null` and `{"a": 1}` as Python would read
`True`, `None` and a dict), except a boolean parameter, written `True` or `False` as Python does.

- "required" / a tool's name: the whole answer is `[call, call, ...]` (one call when not parallel).
- "auto": free text until the model writes `[`, an offered tool's name and `(`; from there the
  list of calls is constrained up to its `]`, and the answer ends there (the calls end the answer
  in this format).

A parameter whose name Python cannot pass as a keyword (`max-results`, `from`) is an OptionsError:
the model could not write a call that parses. A tool that declares no `properties` takes none.
"""

from __future__ import annotations

import keyword

from .errors import OptionsError
from .tool_calls import Tool

_EMPTY = {"type": "grammar", "grammar": 'root ::= ""'}  # XGrammar refuses an empty const_string


def pythonic_format(tools: tuple[Tool, ...], choice: str, parallel: bool) -> dict:
    """The structural tag's format for calls of `tools` under `choice` ("auto", "required" or a name)."""
    offered = tools if choice in ("auto", "required") else tuple(t for t in tools if t.name == choice)
    one_call = not parallel or choice not in ("auto", "required")
    if choice != "auto":
        calls = [_tag(f"{t.name}(", _keyword_arguments(t), ")") for t in offered]
        return _tag("[", _tags_with_separator(calls, ", ", at_least_one=True, stop_after_first=one_call), "]")
    # The trigger is the first call's opening, `[get_weather(`: a bare `[` also opens markdown links.
    # Further calls each open with their comma (XGrammar compiles no tags_with_separator inside an "or").
    further = [] if one_call else [_tags_with_separator(
        [_tag(f", {t.name}(", _keyword_arguments(t), ")") for t in offered], "", at_least_one=False, stop_after_first=False)]
    first_calls = [_tag(f"[{t.name}(", _sequence(_keyword_arguments(t), _const(")"), *further), "]") for t in offered]
    return {"type": "triggered_tags", "triggers": [f"[{t.name}(" for t in offered], "tags": first_calls,
            "at_least_one": False, "stop_after_first": True}


def _keyword_arguments(tool: Tool) -> dict:
    parameters = tool.parameters or {}
    properties = parameters.get("properties") or {}
    for name in properties:
        if not name.isidentifier() or keyword.iskeyword(name):
            raise OptionsError(f"Tool {tool.name!r} has a parameter {name!r} that Python cannot pass as a keyword, "
                               "so the llama3_pythonic format cannot call it: rename the parameter or choose another "
                               "tool_format.")
    required = [n for n in properties if n in set(parameters.get("required") or ())]
    optional = [n for n in properties if n not in required]
    shared = {k: parameters[k] for k in ("$defs", "definitions") if k in parameters}  # for "#/$defs/..." refs
    value = {n: _value(properties[n], shared) for n in properties}
    if required:
        written = [_sequence(_const(("" if i == 0 else ", ") + f"{n}="), value[n]) for i, n in enumerate(required)]
        return _sequence(*written, *(_maybe(_sequence(_const(f", {n}="), value[n])) for n in optional))
    # Only optional ones: the first one written has no comma before it; then each later one may follow.
    alternatives = [_sequence(_const(f"{n}="), value[n],
                              *(_maybe(_sequence(_const(f", {m}="), value[m])) for m in optional[i + 1:]))
                    for i, n in enumerate(optional)]
    return {"type": "or", "elements": [_EMPTY, *alternatives]} if alternatives else _EMPTY


def _value(schema: dict, shared: dict) -> dict:
    if schema.get("type") == "boolean" and not {"enum", "const"} & set(schema):
        return {"type": "or", "elements": [_const("True"), _const("False")]}
    return {"type": "json_schema", "json_schema": {**schema, **shared}}


def _maybe(content: dict) -> dict:
    return {"type": "or", "elements": [content, _EMPTY]}


def _sequence(*elements: dict) -> dict:
    return elements[0] if len(elements) == 1 else {"type": "sequence", "elements": list(elements)}


def _const(text: str) -> dict:
    return {"type": "const_string", "value": text}


def _tag(begin: str, content: dict, end: str) -> dict:
    return {"type": "tag", "begin": begin, "content": content, "end": end}


def _tags_with_separator(tags: list[dict], separator: str, at_least_one: bool, stop_after_first: bool) -> dict:
    return {"type": "tags_with_separator", "tags": tags, "separator": separator, "at_least_one": at_least_one,
            "stop_after_first": stop_after_first}
