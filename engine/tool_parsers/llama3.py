"""Llama 3.x calls, in Meta's two formats: the whole answer is the call(s).

JSON (Llama 3.1/3.2/3.3 with the official template's custom tools), calls separated by ';',
after an optional <|python_tag|> (a special token: decoding usually drops it):

    {"name": "get_weather", "parameters": {"city": "Paris"}}

Pythonic (Llama 3.2 lightweight and Llama 4's documented format), a Python list of calls with
keyword arguments, optionally inside <|python_start|> ... <|python_end|>:

    [get_weather(city="Paris"), get_time(timezone="CET")]

An answer that does not start like a call is text. The pythonic format's arguments are not JSON,
so its calls are parsed but not constrained (`syntax` is None).
"""

from __future__ import annotations

import ast
import json
import re

from .base import CallSyntax, ToolParser, block
from .json_scan import RawCall, calls_in_sequence

PYTHON_TAG = "<|python_tag|>"
PYTHON_START = "<|python_start|>"
_PYTHONIC_START = re.compile(r"^\[\s*[A-Za-z_][\w.-]*\s*\(")
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
    syntax = None  # Python call syntax: parsed, not constrained

    def write_calls(self, calls) -> str:
        return "[" + ", ".join(f"{c.name}(" + ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}"
                                                           for k, v in c.arguments.items()) + ")" for c in calls) + "]"

    def example(self) -> str:
        return "[function_name(argument=value, ...)]"

    def scan(self, text: str, final: bool = False) -> list:
        if not final and PYTHON_START.startswith(text.lstrip()):
            return []
        body = text.strip().removeprefix(PYTHON_START).removesuffix("<|python_end|>").strip()
        if not body:
            return [text] if final else []
        if not _PYTHONIC_START.match(body) and not (not final and _could_start(body)):
            return [text]
        if not final:
            return []  # Python is read whole: the calls come when the answer ends
        calls = _python_calls(body)
        return calls if calls else [text]


def _could_start(body: str) -> bool:
    return body == "[" or bool(re.match(r"^\[\s*[A-Za-z_][\w.-]*\s*$", body))


def _python_calls(body: str) -> list[RawCall] | None:
    try:
        tree = ast.parse(body, mode="eval").body
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
            arguments = {k.arg: _literal(k.value) for k in node.keywords}
        except ValueError:
            return None
        calls.append(RawCall(name, json.dumps(arguments, ensure_ascii=False), True, ast.unparse(node), arguments))
    return calls


def _literal(node):
    if isinstance(node, ast.Name) and node.id in _LITERAL_NAMES:
        return _LITERAL_NAMES[node.id]
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}
    return ast.literal_eval(node)
