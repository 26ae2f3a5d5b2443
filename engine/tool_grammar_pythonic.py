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
from .structural_tags import (EMPTY, const, json_schema, maybe, one_of, sequence, tag, tags_with_separator,
                              triggered_tags)
from .tool_calls import Tool


def pythonic_format(tools: tuple[Tool, ...], choice: str, parallel: bool, syntax) -> dict:
    """The structural tag's format for calls of `tools` under `choice` ("auto", "required" or a
    name), written as `syntax` (the pythonic parser's CallSyntax) says."""
    offered = tools if choice in ("auto", "required") else tuple(t for t in tools if t.name == choice)
    one_call = not parallel or choice not in ("auto", "required")
    arguments = {t.name: _keyword_arguments(t) for t in offered}
    if choice != "auto":
        calls = [tag(syntax.begin(name), args, syntax.end) for name, args in arguments.items()]
        return tag(syntax.prefix, tags_with_separator(calls, syntax.separator, at_least_one=True,
                                                      stop_after_first=one_call), syntax.suffix)
    # The trigger is the first call's opening, `[get_weather(`: a bare `[` also opens markdown links.
    # Further calls each open with their separator (XGrammar compiles no tags_with_separator inside an "or").
    openings = {name: syntax.prefix + syntax.begin(name) for name in arguments}
    further = [] if one_call else [tags_with_separator(
        [tag(syntax.separator + syntax.begin(name), args, syntax.end) for name, args in arguments.items()], "",
        at_least_one=False, stop_after_first=False)]
    first_calls = [tag(openings[name], sequence(args, const(syntax.end), *further), syntax.suffix)
                   for name, args in arguments.items()]
    return triggered_tags(list(openings.values()), first_calls, stop_after_first=True)


def _keyword_arguments(tool: Tool) -> dict:
    parameters = tool.parameters or {}
    properties = parameters.get("properties") or {}
    for name in properties:
        if not name.isidentifier() or keyword.iskeyword(name):
            raise OptionsError(f"Tool {tool.name!r} has a parameter {name!r} that Python cannot pass as a keyword, "
                               "so the llama3_pythonic format cannot call it: rename the parameter or choose another "
                               "tool_format.")
    required_names = set(parameters.get("required") or ())
    required = [n for n in properties if n in required_names]
    optional = [n for n in properties if n not in required_names]
    shared = {k: parameters[k] for k in ("$defs", "definitions") if k in parameters}  # for "#/$defs/..." refs
    value = {n: _value(properties[n], shared) for n in properties}
    if required:
        written = [sequence(const(("" if i == 0 else ", ") + f"{n}="), value[n]) for i, n in enumerate(required)]
        return sequence(*written, *(maybe(sequence(const(f", {n}="), value[n])) for n in optional))
    # Only optional ones: the first one written has no comma before it; then each later one may follow.
    alternatives = [sequence(const(f"{n}="), value[n], *(maybe(sequence(const(f", {m}="), value[m]))
                                                         for m in optional[i + 1:]))
                    for i, n in enumerate(optional)]
    return one_of(EMPTY, *alternatives) if alternatives else EMPTY


def _value(schema: dict, shared: dict) -> dict:
    if schema.get("type") == "boolean" and not {"enum", "const"} & set(schema):
        return one_of(const("True"), const("False"))
    return json_schema({**schema, **shared})
