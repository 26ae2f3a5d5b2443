"""What every tool-call format shares: reading an answer into text and calls, at once or as it
streams, and describing how a call is written so the grammar (tool_grammar.py) can enforce it.

A format's `scan(text, final)` cuts the answer into segments: text (a str) and calls
(`RawCall`). While the answer streams (`final=False`) a call may be unfinished, and text that
could be the start of a call marker is held back. `parse` reads a whole answer: valid calls
become ToolCalls; a call that is malformed (bad JSON, no name) stays in the text, so nothing
the model said is lost.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..tool_calls import ToolCall
from .json_scan import RawCall


@dataclass(frozen=True)
class ParsedAnswer:
    content: str                      # what the answer says outside its calls, stripped
    tool_calls: tuple[ToolCall, ...]


@dataclass(frozen=True)
class CallSyntax:
    """How a format writes calls, for the grammar: `prefix`, then calls joined by `separator`,
    then `suffix`; one call is `begin(name)` + its arguments + `end`: a JSON object, or with
    `arguments="python"` keyword arguments (`city="Paris", days=3`). `trigger` is the text that
    opens calls inside free text (tool_choice "auto")."""
    trigger: str
    prefix: str
    suffix: str
    separator: str
    begin_template: str   # with {name}
    end: str
    arguments: str = "json"

    def begin(self, name: str) -> str:
        return self.begin_template.format(name=name)


class ToolParser:
    """One tool-call format. Subclasses set `name`, `syntax` (None: calls are parsed but not
    constrained) and implement `scan`."""
    name = ""
    syntax: CallSyntax | None = None

    def __init__(self, offered: tuple[str, ...] | None = None):
        # The offered tools' names: a format whose calls open without a marker of their own
        # (pythonic `[get_weather(`) reads only calls of these; the others' grammar names them.
        self.offered = frozenset(offered) if offered else None

    def scan(self, text: str, final: bool = False) -> list:
        raise NotImplementedError

    def write_calls(self, calls) -> str:
        """`calls` (ToolCalls) as this format writes them: how a history shows past calls to a
        template that knows no tools."""
        s = self.syntax
        return s.prefix + s.separator.join(s.begin(c.name) + json.dumps(c.arguments, ensure_ascii=False) + s.end
                                           for c in calls) + s.suffix

    def example(self) -> str:
        """One call, with placeholders: for the fallback prompt's instructions."""
        s = self.syntax
        return s.prefix + s.begin("<function-name>") + "<arguments-json-object>" + s.end + s.suffix

    def parse(self, text: str, ids: list[str] | None = None) -> ParsedAnswer:
        """Text and calls of a whole answer; `ids` names the calls (new ids beyond them)."""
        ids = list(ids or [])
        content, calls = [], []
        for segment in self.scan(text, final=True):
            if isinstance(segment, str):
                content.append(segment)
            elif segment.valid:
                call_id = ids[len(calls)] if len(calls) < len(ids) else ToolCall.new_id()
                calls.append(ToolCall(call_id, segment.name, segment.parsed))
            else:
                content.append(segment.raw)
        return ParsedAnswer("".join(content).strip(), tuple(calls))


def held_back(text: str, marker: str) -> str:
    """`text` without a tail that may be the start of `marker` (more text will tell)."""
    for size in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:size]):
            return text[:-size]
    return text


def block(raw: str, calls: list[RawCall], closed: bool, well_formed: bool = True) -> list:
    """The segments of one marked block of calls: the calls, or, once the block has ended and
    it or a call in it is malformed, the block's raw text."""
    if closed and not (well_formed and calls and all(call.valid for call in calls)):
        return [raw]
    return list(calls)
