"""Reading JSON tool calls out of text that may still be growing (a stream) or be malformed.

A call is written as an object with a "name" and its "arguments" (or "parameters", Llama's
word): `{"name": "get_weather", "arguments": {"city": "Paris"}}`. While it streams, the name is
known once its string has closed, and the arguments' text grows from the `{` after the key.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

_NAME = re.compile(r'"name"\s*:\s*"((?:[^"\\]|\\.)*)"')
_ARGUMENTS = re.compile(r'"(?:arguments|parameters)"\s*:\s*')
_DELIMITERS = set(",}]; \t\r\n")


@dataclass
class RawCall:
    """One call as far as the text goes: `arguments` is the raw JSON text seen so far."""
    name: str | None
    arguments: str
    complete: bool          # the call's text has ended (its object closed, or its closing tag came)
    raw: str                # the call's own text, kept as content if it turns out malformed
    parsed: dict | None = None  # the arguments as an object, once complete and valid

    @property
    def valid(self) -> bool:
        return self.complete and self.name is not None and self.parsed is not None


def value_end(text: str, start: int, final: bool = False) -> int | None:
    """The index just past the JSON value starting at text[start], or None while it is
    unfinished (a number or literal at the very end counts as finished only if `final`)."""
    if start >= len(text):
        return None
    opener = text[start]
    if opener in "{[":
        depth, in_string, escaped = 0, False, False
        for i in range(start, len(text)):
            char = text[i]
            if in_string:
                if escaped:
                    escaped = False
                elif char == "\\":
                    escaped = True
                elif char == '"':
                    in_string = False
            elif char == '"':
                in_string = True
            elif char in "{[":
                depth += 1
            elif char in "}]":
                depth -= 1
                if depth == 0:
                    return i + 1
        return None
    if opener == '"':
        escaped = False
        for i in range(start + 1, len(text)):
            if escaped:
                escaped = False
            elif text[i] == "\\":
                escaped = True
            elif text[i] == '"':
                return i + 1
        return None
    for i in range(start, len(text)):
        if text[i] in _DELIMITERS:
            return i
    return len(text) if final else None


def call_from_object(text: str, final: bool = False) -> RawCall:
    """A call from the text of one JSON object (possibly unfinished)."""
    end = value_end(text, 0, final) if text.startswith("{") else None
    args_match = _ARGUMENTS.search(text)
    name_match = _NAME.search(text[:args_match.start()] if args_match else text)  # not a "name" inside the arguments
    name = _unescape(name_match.group(1)) if name_match else None
    arguments = ""
    if args_match:
        args_start = args_match.end()
        args_end = value_end(text, args_start, final or end is not None)
        arguments = text[args_start:args_end] if args_end is not None else text[args_start:]
    call = RawCall(name, arguments, complete=end is not None, raw=text[:end] if end else text)
    if call.complete:
        whole = _loads(call.raw)
        if isinstance(whole, dict) and isinstance(whole.get("name"), str):
            args = whole.get("arguments", whole.get("parameters", {}))
            call.name = whole["name"]
            call.parsed = args if isinstance(args, dict) else None
            if isinstance(args, dict) and not args_match:
                call.arguments = json.dumps(args, ensure_ascii=False)
    return call


def calls_in_sequence(text: str, separators: str, final: bool = False) -> tuple[list[RawCall], int | None]:
    """Calls written one after another as JSON objects (`{...}, {...}` or `{...}; {...}`),
    from text[0]; returns them and where the sequence stopped (None if it may still go on)."""
    calls, i = [], 0
    while True:
        while i < len(text) and (text[i].isspace() or text[i] in separators):
            i += 1
        if i >= len(text):
            return calls, (i if final else None)
        if text[i] != "{":
            return calls, i
        end = value_end(text, i, final)
        calls.append(call_from_object(text[i:end] if end else text[i:], final))
        if end is None:
            return calls, (len(text) if final else None)
        i = end


def _loads(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def _unescape(quoted: str) -> str:
    value = _loads(f'"{quoted}"')
    return value if isinstance(value, str) else quoted
