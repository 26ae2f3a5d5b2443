"""XGrammar structural-tag formats as openvino_genai 2026.4 takes them (`structural_tags_config`),
built as plain dicts: the pieces tool_grammar.py and tool_grammar_pythonic.py put together.

Measured on genai 2026.4's XGrammar: an empty `const_string` does not compile (EMPTY stands in
for "nothing"), nor does a `tags_with_separator` inside an `or`.
"""

from __future__ import annotations

import json

EMPTY = {"type": "grammar", "grammar": 'root ::= ""'}


def structural_tag(fmt: dict) -> str:
    """The JSON text genai compiles (and the compile cache's key, structured.py)."""
    return json.dumps({"type": "structural_tag", "format": fmt}, ensure_ascii=False)


def tag(begin: str, content: dict, end: str) -> dict:
    return {"type": "tag", "begin": begin, "content": content, "end": end}


def tags_with_separator(tags: list[dict], separator: str, at_least_one: bool, stop_after_first: bool) -> dict:
    return {"type": "tags_with_separator", "tags": tags, "separator": separator, "at_least_one": at_least_one,
            "stop_after_first": stop_after_first}


def triggered_tags(triggers: list[str], tags: list[dict], stop_after_first: bool) -> dict:
    return {"type": "triggered_tags", "triggers": triggers, "tags": tags, "at_least_one": False,
            "stop_after_first": stop_after_first}


def json_schema(schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": schema}


def const(text: str) -> dict:
    return {"type": "const_string", "value": text}


def sequence(*elements: dict) -> dict:
    return elements[0] if len(elements) == 1 else {"type": "sequence", "elements": list(elements)}


def one_of(*elements: dict) -> dict:
    return {"type": "or", "elements": list(elements)}


def maybe(content: dict) -> dict:
    return one_of(content, EMPTY)
