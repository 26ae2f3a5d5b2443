"""What one request tells its consumer, as typed events: the one language of the request path.

A request's events, in order:

    Accepted              the engine took it: how its prompt was fed (always first, unless refused)
    Text | ToolCallDelta  as it generates: the answer's text outside tool calls, and the calls,
                          parsed once, incrementally, here in the engine (tool_parsers/); a
                          thinking model's reasoning comes first, as Text marked `reasoning`
    End | Failed          last, once: the request's own GenerationResult (None when the engine
                          dropped it, closing), or the error it ended with

A refused request (a PromptError, an OptionsError, an engine that has stopped) gets one
`Failed` and nothing else. The same events go everywhere: into a `TextStream` for Python
callers, to the server's event loop (which writes them as SSE), and across the pipe of an
EngineProcess as they are (pickled dataclasses). `Batch` gathers them for a hand-off per
batching step instead of one per token.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

from .results import GeneratedToken, GenerationResult
from .tool_parsers.incremental import CallDelta as ToolCallDelta  # (index, id, name, arguments): OpenAI's delta

__all__ = ["Accepted", "Batch", "End", "Failed", "Text", "ToolCallDelta"]


@dataclass(frozen=True)
class Accepted:
    input_tokens: int               # the prompt's tokens as the model is fed them
    dropped_messages: int = 0       # oldest chat messages left out to fit the context
    tool_format: str | None = None  # tools offered: the format the model writes calls in


@dataclass(frozen=True)
class Text:
    text: str                       # new text of the answer ("" when only `tokens` are new)
    output_tokens: int              # tokens generated so far
    tokens: tuple[GeneratedToken, ...] = ()  # with logprobs: the tokens this event completes
    reasoning: bool = False         # the model's thinking, read apart from its answer (reasoning.py)


@dataclass(frozen=True)
class End:
    result: GenerationResult | None  # None: the engine dropped the request (it was closing)


@dataclass(frozen=True)
class Failed:
    error: BaseException             # an EngineError: PromptError and OptionsError are the caller's


def is_last(event) -> bool:
    return isinstance(event, (End, Failed))


class Batch:
    """Gather items (events, or events tagged with their request), then hand them on together:
    `put` from the producing thread, `flush` once per batching step (the runner says when), or
    at once with `now` (a request's last event). `send` gets a non-empty list. Used wherever
    events change threads or processes: one hand-off per step, not one per token."""

    def __init__(self, send: Callable[[list], None]):
        self._send = send
        self._pending: list = []
        self._lock = threading.Lock()

    def put(self, item, now: bool = False) -> None:
        with self._lock:
            self._pending.append(item)
        if now:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            events, self._pending = self._pending, []
        if events:
            self._send(events)
