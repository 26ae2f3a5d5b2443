"""One request's stream of text: the only channel between a caller and the thread that generates.

A runner (single.py, batch.py) owns the pipeline on its own thread and feeds each request's
`TextStream` through `Feed`: text pieces with the running token count (and, with
GenerationOptions(logprobs=True), the GeneratedToken records that piece completes), then one end
event with the request's own GenerationResult (or an error). The caller iterates text pieces, or
`tokens()` for the records, as mlx-lm's stream_generate yields them; `result` holds the
request's result once it has ended. `close()` (or leaving a `with` block, Ctrl-C included, or
dropping the stream) cancels: the runner stops that request at its next token and frees what it
held, and the result says "cancelled" with the text and token count the caller received. The
caller never holds the pipeline, so no abandoned or interrupted stream blocks other callers or
lets two generations into one pipeline.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator

from .results import GeneratedToken, GenerationResult, Metrics

_POLL_S = 0.1  # waits wake this often, so Ctrl-C reaches a caller blocked on the next piece


@dataclass(frozen=True)
class StreamEnd:
    """A stream's last event: its result (None when it was cancelled) or the error it failed with."""
    result: GenerationResult | None
    error: BaseException | None


class Feed:
    """The runner's side of a stream: put pieces, then end it once (later calls are ignored).
    It holds the stream's queue and cancel flag, not the stream, so a stream its caller drops
    is collected, and its cancel flag set, while the runner still works on it."""

    def __init__(self, stream: "TextStream"):
        self._events = stream._events
        self._cancel = stream._cancel
        self._ended = False

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def piece(self, text: str, output_tokens: int, tokens: tuple[GeneratedToken, ...] = ()) -> None:
        """Text (may be empty when only `tokens` are new: a token whose text is held back)."""
        if text or tokens:
            self._events.put((text, output_tokens, tokens))

    def flush(self) -> None:
        """The runner has put all it has for now (a batching step's tokens): an event sink that
        gathers pieces (process.py, the server) hands them on here, once per step."""
        flush = getattr(self._events, "flush", None)
        if flush is not None:
            flush()

    def end(self, result: GenerationResult | None = None, error: BaseException | None = None) -> None:
        if not self._ended:
            self._ended = True
            self._events.put(StreamEnd(result, error))


class TextStream:
    """Text pieces of one generation, as they are produced; `result` once it has ended.

        with engine.stream("Tell me a story") as stream:
            for piece in stream:
                print(piece, end="")
        print(stream.result.finish_reason, stream.result.output_tokens)
    """

    def __init__(self, input_tokens: int, dropped_messages: int = 0, on_cancel: Callable[[], None] | None = None,
                 events=None):
        # `events`: where the runner's events go instead of this stream's own queue, for a caller
        # that forwards them elsewhere (process.py sends them to another process, the server to
        # its event loop): an object with put(event) and optionally flush(); it gets
        # (text, output_tokens, tokens) pieces, then one StreamEnd. Such a stream is not iterated, only closed.
        self._events = queue.Queue() if events is None else events
        self._cancel = threading.Event()
        self._on_cancel = on_cancel
        self._pieces: list[str] = []
        self._tokens = 0
        self._input_tokens = input_tokens
        self._dropped = dropped_messages
        self._started = time.perf_counter()
        self._first_piece_at: float | None = None
        self._on_result: list[Callable[[GenerationResult], None]] = []
        self.result: GenerationResult | None = None
        # Tools offered: the format of the calls in the text (tool_parsers/), for a caller that
        # reads them as they stream (IncrementalToolParser); the result carries them parsed.
        self.tool_format: str | None = None

    @property
    def text(self) -> str:
        """What has streamed so far (the whole answer once the stream has ended)."""
        return "".join(self._pieces)

    @property
    def input_tokens(self) -> int:
        """Prompt tokens as the model is fed them."""
        return self._input_tokens

    @property
    def done(self) -> bool:
        return self.result is not None

    def add_done_callback(self, callback: Callable[[GenerationResult], None]) -> None:
        """Call `callback(result)` once the stream has ended (on the caller's thread)."""
        self._on_result.append(callback)

    def __iter__(self) -> "TextStream":
        return self

    def __next__(self) -> str:
        while True:
            piece, _ = self._next_piece()
            if piece:
                return piece

    def tokens(self) -> Iterator[GeneratedToken]:
        """The generated tokens one by one (id, text, logprob), instead of text pieces; needs
        GenerationOptions(logprobs=True). The stream's text and result fill as with iteration."""
        while True:
            try:
                _, tokens = self._next_piece()
            except StopIteration:
                return
            yield from tokens

    def _next_piece(self) -> tuple[str, tuple]:
        if self.result is not None:
            raise StopIteration
        event = self._next_event()
        if isinstance(event, StreamEnd):
            self._finish(event)
            raise StopIteration
        piece, self._tokens, tokens = event
        if self._first_piece_at is None:
            self._first_piece_at = time.perf_counter()
        self._pieces.append(piece)
        return piece, tokens

    def close(self) -> None:
        """Stop generating. Unless the stream had already ended, the result is "cancelled" and
        holds what the caller received: its text and token count. Never waits for the runner."""
        if self.result is not None:
            return
        self._cancel.set()
        if self._on_cancel:
            self._on_cancel()
        self._set_result(self._measured("cancelled"))

    def __enter__(self) -> "TextStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        if self.result is None:
            self._cancel.set()  # abandoned: let the runner drop it at its next token
            if self._on_cancel:
                self._on_cancel()

    def _next_event(self):
        while True:
            try:
                return self._events.get(timeout=_POLL_S)
            except queue.Empty:
                continue

    def _finish(self, end: StreamEnd) -> None:
        if self.result is not None:  # close()d from another thread while this one waited: keep "cancelled"
            return
        if end.error is not None:
            self._set_result(self._measured("error"))
            raise end.error
        self._set_result(end.result)

    def _set_result(self, result: GenerationResult) -> None:
        self.result = result
        for callback in self._on_result:
            callback(result)

    def _measured(self, reason: str) -> GenerationResult:
        metrics = Metrics.timed(self._started, self._first_piece_at, self._tokens)
        return GenerationResult(text=self.text, input_tokens=self._input_tokens, output_tokens=self._tokens,
                                finish_reason=reason, metrics=metrics, dropped_messages=self._dropped)
