"""Thinking models: their reasoning read apart from their answer.

Qwen 3, the DeepSeek-R1 distills and Phi-4-reasoning think before they answer, between
markers their chat template shows (`<think>` ... `</think>`). Left in the answer, the thinking
breaks JSON answers and tool calls. So for a model whose template has the markers:

- `thinking_of(template)` says how it thinks, and whether the template can turn thinking off
  (it reads `enable_thinking`: Qwen 3's writes an empty `<think></think>` when it is false).
- `start_of(prompt, thinking)` reads the templated prompt's end: the DeepSeek-R1 distills'
  template opens the thinking itself (the answer starts inside it), Qwen 3's with thinking off
  closes it (nothing to read apart), otherwise the model may open it.
- `Splitter` reads a streamed answer into (is_reasoning, text) parts as it arrives, holding back
  a marker split across pieces until it is whole; a thinking that never closes (cut by the token
  limit) is all reasoning.
- `constrained(format, thinking, start)`: a structured-output or tool-call constraint applies
  to the answer after the thinking, never to the thinking itself (an XGrammar structural tag: any
  text up to the closing marker, then the constraint).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import structural_tags as st

OPEN, CLOSE = "<think>", "</think>"

# Where a templated prompt leaves the model (start_of):
INSIDE = "inside"  # the template opened the thinking: the answer starts in it
MAY_OPEN = "may_open"  # the model may open it first thing
OFF = "off"        # the template closed it (thinking turned off): nothing to read apart


@dataclass(frozen=True)
class Thinking:
    """How a model thinks, read from its chat template."""
    open: str = OPEN
    close: str = CLOSE
    can_turn_off: bool = False  # the template reads `enable_thinking`


def thinking_of(template: str | None) -> Thinking | None:
    """How the model whose chat template is `template` thinks; None if it shows no markers."""
    if not template or OPEN not in template or CLOSE not in template:
        return None
    return Thinking(can_turn_off="enable_thinking" in template)


def start_of(prompt: str, thinking: Thinking) -> str:
    """INSIDE, MAY_OPEN or OFF: where the templated `prompt` leaves the model."""
    tail = prompt.rstrip()
    if tail.endswith(thinking.close):
        return OFF
    return INSIDE if tail.endswith(thinking.open) else MAY_OPEN


def constrained(fmt: dict, thinking: Thinking, start: str) -> dict:
    """An XGrammar structural-tag format (structural_tags.py) that lets the model think first,
    freely, and constrains what follows the closing marker with `fmt`."""
    if start == OFF:
        return fmt
    think = st.tag("" if start == INSIDE else thinking.open, {"type": "any_text"}, thinking.close)
    return st.sequence(think if start == INSIDE else st.maybe(think), fmt)


class Splitter:
    """Split streamed text into reasoning and answer: `feed` pieces, then `finish` once; each
    returns the (is_reasoning, text) parts that are certain so far. The whitespace a template
    puts around the markers is dropped."""

    def __init__(self, thinking: Thinking, start: str):
        self._open, self._close = thinking.open, thinking.close
        self._state = "thinking_start" if start == INSIDE else "start"
        self._held = ""
        self.thought = start == INSIDE  # the answer opened (or started inside) a thinking
        self.closed = False             # and closed it

    def feed(self, text: str) -> list[tuple[bool, str]]:
        self._held += text
        parts: list[tuple[bool, str]] = []
        while (step := getattr(self, f"_{self._state}")(parts)) is not None:
            self._state = step
        return [(reasoning, text) for reasoning, text in parts if text]

    def finish(self) -> list[tuple[bool, str]]:
        """The text still held: a thinking that never closed is reasoning; a marker never
        completed is answer text."""
        held, self._held = self._held, ""
        if self._state in ("thinking", "thinking_start"):
            return [(True, held.rstrip())] if held.strip() else []
        if self._state == "after":
            return []
        return [(False, held)] if held else []

    # Each state reads what is held, puts certain parts, and returns the next state, or None to wait.
    def _start(self, parts) -> str | None:
        stripped = self._held.lstrip()
        if stripped.startswith(self._open):
            self._held = stripped[len(self._open):]
            self.thought = True
            return "thinking_start"
        if self._open.startswith(stripped):  # nothing yet, or the marker's beginning
            return None
        return "answer"

    def _thinking_start(self, parts) -> str | None:
        self._held = self._held.lstrip()
        return "thinking" if self._held else None

    def _thinking(self, parts) -> str | None:
        at = self._held.find(self._close)
        if at >= 0:
            parts.append((True, self._held[:at].rstrip()))
            self._held = self._held[at + len(self._close):]
            self.closed = True
            return "after"
        # Hold what may be the closing marker's beginning, and trailing whitespace (dropped before it).
        certain = self._held[:len(self._held) - _partial_suffix(self._held, self._close)].rstrip()
        parts.append((True, certain))
        self._held = self._held[len(certain):]
        return None

    def _after(self, parts) -> str | None:
        self._held = self._held.lstrip()
        return "answer" if self._held else None

    def _answer(self, parts) -> str | None:
        parts.append((False, self._held))
        self._held = ""
        return None


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest end of `text` that begins `marker` (a marker still arriving)."""
    for length in range(min(len(text), len(marker) - 1), 0, -1):
        if marker.startswith(text[-length:]):
            return length
    return 0
