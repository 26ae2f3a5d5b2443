"""Phi-4-mini and Mistral calls: a marker, then a JSON array of calls.

Phi-4-mini (Microsoft's function-calling guide; vLLM's phi4_mini_json):

    functools[{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": ..., "arguments": ...}]

Mistral 7B Instruct v0.3 and later (mistral-common), after text or alone:

    [TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}]

[TOOL_CALLS] is a special token, which decoding may drop: an answer that starts with a JSON array
of {"name", "arguments"} objects is read as calls too. Mistral's v11+ form
`[TOOL_CALLS]get_weather{"city": "Paris"}` (and `...[ARGS]{...}`) is read as well.
"""

from __future__ import annotations

import re

from .base import CallSyntax, ToolParser, block, held_back
from .json_scan import call_from_object, calls_in_sequence, value_end

_V11_CALL = re.compile(r"\s*([A-Za-z0-9_.-]+)\s*(?:\[ARGS\])?\s*(?=\{)")
_V11_PARTIAL = re.compile(r"\s*[A-Za-z0-9_.-]*\s*(?:\[A?R?G?S?\]?)?\s*")


class MarkedArrayParser(ToolParser):
    marker = ""

    def scan(self, text: str, final: bool = False) -> list:
        start = self._marker_at(text)
        if start < 0:
            return [text if final else held_back(text, self.marker)]
        after = start + len(self.marker)
        segments = [text[:start]]
        return segments + self._array(text, after, final)

    def _marker_at(self, text: str) -> int:
        return text.find(self.marker)

    def _array(self, text: str, after: int, final: bool) -> list:
        """Calls in the `[...]` at text[after:] (whitespace before it allowed), then the text after."""
        rest = text[after:]
        opening = len(rest) - len(rest.lstrip())
        if opening >= len(rest):
            return [text[after - len(self.marker):]] if final else []
        if rest[opening] != "[":
            return self._other_form(text, after, final)
        items = rest[opening + 1:]
        calls, stop = calls_in_sequence(items, ",", final=final)
        if stop is None:
            return list(calls)
        closed = items[stop:stop + 1] == "]"
        end = after + opening + 1 + stop + (1 if closed else 0)
        raw = text[after - len(self.marker):end]
        return block(raw, calls, closed=True, well_formed=closed) + [text[end:]]

    def _other_form(self, text: str, after: int, final: bool) -> list:
        return [text[after - len(self.marker):]]


class Phi4MiniParser(MarkedArrayParser):
    name = "phi4_mini"
    marker = "functools"
    syntax = CallSyntax(trigger="functools[", prefix="functools[", suffix="]", separator=", ",
                        begin_template='{{"name": "{name}", "arguments": ', end="}")


class MistralParser(MarkedArrayParser):
    name = "mistral"
    marker = "[TOOL_CALLS]"
    syntax = CallSyntax(trigger="[TOOL_CALLS]", prefix="[TOOL_CALLS][", suffix="]", separator=", ",
                        begin_template='{{"name": "{name}", "arguments": ', end="}")

    def scan(self, text: str, final: bool = False) -> list:
        if self.marker not in text and text.lstrip().startswith("[{"):  # the marker was decoded away
            lead = len(text) - len(text.lstrip())
            return [text[:lead]] + self._array(text[:lead] + self.marker + text[lead:], lead + len(self.marker), final)
        return super().scan(text, final)

    def _other_form(self, text: str, after: int, final: bool) -> list:
        """v11+: name{arguments} (or name[ARGS]{arguments}), each after its own [TOOL_CALLS]."""
        calls, i = [], after
        while True:
            match = _V11_CALL.match(text, i)
            if not match:
                if not final and (_V11_PARTIAL.fullmatch(text, i) or self.marker.startswith(text[i:].lstrip())):
                    return calls
                return block(text[after - len(self.marker):i], calls, closed=True, well_formed=bool(calls)) + [text[i:]]
            end = value_end(text, match.end(), final)
            call = call_from_object(f'{{"name": "{match.group(1)}", "arguments": {text[match.end():end]}}}'
                                    if end else "{" + f'"name": "{match.group(1)}", "arguments": ' + text[match.end():],
                                    final=final)
            calls.append(call)
            if end is None:
                return calls
            i = end
            if text.startswith(self.marker, i):
                i += len(self.marker)
