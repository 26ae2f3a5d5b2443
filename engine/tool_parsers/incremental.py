"""Tool calls read as the answer streams, in OpenAI's delta shape: text deltas, and per call
first its index, id and name, then fragments of its arguments' JSON text.

    reader = IncrementalToolParser(HermesParser())
    for piece in stream:
        for delta in reader.feed(piece): ...
    last_deltas, answer = reader.finish()      # answer: the same ParsedAnswer parse() gives

Each feed re-scans the answer so far (answers are short; this keeps one parser per format, the
same code for whole and streamed answers). Text is sent once it cannot be the start of a call
marker, without its leading and trailing whitespace, so the streamed text equals the whole
answer's `content`. The finished answer's calls keep the ids the stream gave them.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..tool_calls import ToolCall
from .base import ParsedAnswer, ToolParser


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class CallDelta:
    index: int
    id: str | None = None        # the first delta of a call carries its id and name
    name: str | None = None
    arguments: str = ""          # a fragment of the arguments' JSON text


class IncrementalToolParser:
    def __init__(self, parser: ToolParser):
        self.parser = parser
        self._text = ""
        self._sent_text = ""
        self._ids: list[str] = []
        self._sent_arguments: list[str] = []

    def feed(self, piece: str) -> list:
        self._text += piece
        return self._deltas(self.parser.scan(self._text, final=False))

    def finish(self) -> tuple[list, ParsedAnswer]:
        """The last deltas and the whole answer, its calls under the ids the stream used."""
        segments = self.parser.scan(self._text, final=True)
        deltas = self._deltas(segments)
        return deltas, self.parser.parse(self._text, ids=self._ids)

    def _deltas(self, segments: list) -> list:
        text = "".join(s for s in segments if isinstance(s, str)).strip()  # (at the end, malformed calls are text)
        deltas = self._text_delta(text)
        calls = [s for s in segments if not isinstance(s, str) and s.name is not None]
        for index, call in enumerate(calls):
            if index == len(self._ids):
                self._ids.append(ToolCall.new_id())
                self._sent_arguments.append("")
                deltas.append(CallDelta(index, self._ids[index], call.name))
            sent = self._sent_arguments[index]
            if len(call.arguments) > len(sent) and call.arguments.startswith(sent):
                deltas.append(CallDelta(index, arguments=call.arguments[len(sent):]))
                self._sent_arguments[index] = call.arguments
        return deltas

    def _text_delta(self, text: str) -> list:
        if len(text) > len(self._sent_text) and text.startswith(self._sent_text):
            new, self._sent_text = text[len(self._sent_text):], text
            return [TextDelta(new)]
        return []
