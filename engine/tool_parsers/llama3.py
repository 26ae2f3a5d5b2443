"""Llama 3.x calls, in Meta's two formats: the whole answer is the call(s).

JSON (Llama 3.1/3.2/3.3 with the official template's custom tools), calls separated by ';',
after an optional <|python_tag|> (a special token: decoding usually drops it):

    {"name": "get_weather", "parameters": {"city": "Paris"}}

Pythonic (Llama 3.2 lightweight and Llama 4's documented format), a Python list of calls with
keyword arguments, optionally inside <|python_start|> ... <|python_end|>:

    [get_weather(city="Paris"), get_time(timezone="CET")]

A JSON answer that does not start like a call is text. Pythonic calls may follow text (the
grammar of tool_choice "auto" lets the model open them after some text). Their values are Python
literals, or JSON ones, which the grammar writes (tool_grammar_pythonic.py).
"""

from __future__ import annotations

import ast
import json
import math
import re

from .base import CallSyntax, ToolParser, block, held_back
from .json_scan import RawCall, calls_in_sequence

PYTHON_TAG = "<|python_tag|>"
PYTHON_START = "<|python_start|>"
_PYTHONIC_OPENING = re.compile(r"\[\s*([A-Za-z_][\w.-]*)\s*\(")
_MAYBE_OPENING = re.compile(r"\[\s*(?:[A-Za-z_][\w.-]*\s*)?$")
_LITERAL_NAMES = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}


class Llama3JsonParser(ToolParser):
    name = "llama3_json"
    syntax = CallSyntax(trigger='{"name": "', prefix="", suffix="", separator="; ",
                        begin_template='{{"name": "{name}", "parameters": ', end="}")

    def scan(self, text: str, final: bool = False) -> list:
        if not final and PYTHON_TAG.startswith(text.lstrip()):
            return []  # nothing yet, or the start of <|python_tag|>
        body = text.replace(PYTHON_TAG, "", 1).lstrip() if text.lstrip().startswith(PYTHON_TAG) else text.lstrip()
        if not body:
            return [text] if final else []
        if not body.startswith("{"):
            return [text]
        calls, stop = calls_in_sequence(body, ";", final=final)
        if stop is None:
            return list(calls)
        rest = body[stop:]
        return block(text[:len(text) - len(rest)], calls, closed=True) + [rest]


class Llama3PythonicParser(ToolParser):
    name = "llama3_pythonic"
    syntax = CallSyntax(trigger="[", prefix="[", suffix="]", separator=", ", begin_template="{name}(", end=")",
                        arguments="python")  # the grammar: tool_grammar_pythonic.py

    def write_calls(self, calls) -> str:
        return "[" + ", ".join(f"{c.name}(" + ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}"
                                                           for k, v in c.arguments.items()) + ")" for c in calls) + "]"

    def example(self) -> str:
        return "[function_name(argument=value, ...)]"

    def scan(self, text: str, final: bool = False) -> list:
        """Text, then the list of calls where one opens (Python is read whole: while the answer
        streams, the calls wait for its end), then any text after the list."""
        for opening in _PYTHONIC_OPENING.finditer(text):
            if self.offered and opening.group(1) not in self.offered:
                continue  # `[note(1)]`, or a call of a tool nobody offered: text
            before = text[:opening.start()].rstrip().removesuffix(PYTHON_START)
            if not final:
                return [before]
            listed = _call_list(text, opening.start())
            if listed is not None and (not self.offered or all(c.name in self.offered for c in listed[0])):
                calls, end = listed
                after = text[end:].removeprefix("<|python_end|>")
                return [before, *calls, after]
        if final:
            return [text]
        return [_held_back_opening(text)]


def _held_back_opening(text: str) -> str:
    """`text` without a tail that may become a call list's opening (`<|python_start|>[get_wea`)."""
    tail = _MAYBE_OPENING.search(text)
    text = text[:tail.start()] if tail else text
    return held_back(text.removesuffix(PYTHON_START), PYTHON_START)


def _call_list(text: str, start: int) -> tuple[list[RawCall], int] | None:
    """The calls of the list opening at text[start] and the index past its `]`, or None."""
    end = start
    while (end := text.find("]", end) + 1) > 0:
        calls = _python_calls(text[start:end])
        if calls:
            return calls, end
    return None


def _python_calls(source: str) -> list[RawCall] | None:
    try:
        tree = ast.parse(source, mode="eval").body
    except SyntaxError:
        return None
    if not isinstance(tree, ast.List) or not tree.elts:
        return None
    calls = []
    for node in tree.elts:
        if not isinstance(node, ast.Call) or node.args or any(k.arg is None for k in node.keywords):
            return None
        name = ast.unparse(node.func)
        try:
            arguments = {k.arg: _literal(k.value, source) for k in node.keywords}
        except ValueError:
            return None
        calls.append(RawCall(name, json.dumps(arguments, ensure_ascii=False), True, ast.unparse(node), arguments))
    return calls


def _literal(node, source: str):
    """A JSON value from a Python literal (or a JSON one: `true`, `null`, `"\\u00e9"`)."""
    if isinstance(node, ast.Name) and node.id in _LITERAL_NAMES:
        return _LITERAL_NAMES[node.id]
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e, source) for e in node.elts]
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise ValueError("** in a dict")
        keys = [_literal(k, source) for k in node.keys]
        if not all(isinstance(k, str) for k in keys):
            raise ValueError("a dict key that is not a string")
        return dict(zip(keys, (_literal(v, source) for v in node.values)))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        value = node.operand.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"not a number: {ast.unparse(node)}")
        value = -value
    elif isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, str) and (written := ast.get_source_segment(source, node) or "").startswith('"'):
            try:  # JSON's escapes where Python's differ (`\\/`, surrogate pairs)
                value = json.loads(written)
            except ValueError:
                pass
    else:
        raise ValueError(f"not a literal: {ast.unparse(node)}")
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and math.isfinite(value):
        return value
    raise ValueError(f"not a JSON value: {value!r}")
