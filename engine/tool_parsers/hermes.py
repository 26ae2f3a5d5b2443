"""Hermes / Qwen calls: each a JSON object in its own tag, anywhere in the answer.

    Let me check.<tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

(NousResearch's Hermes-2-Pro and Qwen2.5/Qwen3 templates.) One tag may also hold a JSON list of
calls, as SmolLM2's function-calling prompt asks. This is also the format of ovchat's fallback
prompt for templates that know no tools (tool_use.py).
"""

from __future__ import annotations

from .base import CallSyntax, ToolParser, block, held_back
from .json_scan import calls_in_sequence

OPEN, CLOSE = "<tool_call>", "</tool_call>"


class HermesParser(ToolParser):
    name = "hermes"
    syntax = CallSyntax(trigger=OPEN, prefix="", suffix="", separator="\n",
                        begin_template=OPEN + '\n{{"name": "{name}", "arguments": ', end="}\n" + CLOSE)

    def scan(self, text: str, final: bool = False) -> list:
        segments, i = [], 0
        while True:
            start = text.find(OPEN, i)
            if start < 0:
                segments.append(text[i:] if final else held_back(text[i:], OPEN))
                return segments
            segments.append(text[i:start])
            body_start = start + len(OPEN)
            close = text.find(CLOSE, body_start)
            closed = close >= 0 or final
            body_end = close if close >= 0 else len(text)
            raw = text[start:body_end + len(CLOSE) if close >= 0 else body_end]
            calls, well_formed = _calls(text[body_start:body_end], closed)
            segments += block(raw, calls, closed, well_formed)
            if close < 0:
                return segments
            i = close + len(CLOSE)


def _calls(body: str, closed: bool) -> tuple[list, bool]:
    """The calls in one tag's body, and whether the body is well formed (once closed)."""
    stripped = body.strip()
    if stripped.startswith("["):  # a list of calls in one tag
        calls, stop = calls_in_sequence(stripped[1:], ",", final=closed)
        return calls, stop is not None and stripped[1:][stop:].strip() == "]"
    calls, stop = calls_in_sequence(stripped, "", final=closed)
    return calls, len(calls) == 1 and stop is not None and not stripped[stop:].strip()
