"""One request between the thread that generates and whoever consumes it.

- `Handle`: the consumer's grip on a request: `cancel()` stops it at its next token, and the
  runner frees what it held. Any thread may cancel; a cancel before the request started means
  it never runs.
- `Feed`: the runner's side (single.py, batch.py). The runner puts the answer's text and token
  count; the Feed turns them into typed events (events.py) for one sink, reading tool calls out
  of the text as it streams, once, so the streamed deltas and the final result's `tool_calls`
  come from the same parse.
- `TextStream`: the Python caller's side, an iterator of the answer's text pieces (or
  `tokens()`, or `pieces()`: Text events, a thinking model's reasoning marked), as mlx-lm's
  stream_generate yields them; `result` once it has ended. `close()` (or leaving a
  `with` block, Ctrl-C included, or dropping the stream) cancels, and the result says
  "cancelled" with the text and token count the caller received. The caller never holds the
  pipeline, so no abandoned or interrupted stream blocks other callers.

A sink is any object with `put(event)` and `flush()`: the stream's own queue, the server's
event-loop hand-off, the engine process's pipe.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Callable, Iterator

from .errors import EngineError
from .events import Accepted, End, Failed, Text, is_last
from .reasoning import Splitter
from .results import GeneratedToken, GenerationResult, Metrics
from .tool_parsers import IncrementalToolParser, TextDelta, parser_for

_POLL_S = 0.1  # waits wake this often, so Ctrl-C reaches a caller blocked on the next piece


class Handle:
    """Cancel one request from any thread; `on_cancel` (set by whoever runs it) is told at once."""

    def __init__(self):
        self._cancel = threading.Event()
        self.on_cancel: Callable[[], None] | None = None

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        self._cancel.set()
        if (on_cancel := self.on_cancel) is not None:
            on_cancel()


class Feed:
    """The runner's side of one request: put pieces, then end it once (later calls are ignored).
    It holds the sink and the handle, never the TextStream, so a stream its caller drops is
    collected (and cancels) while the runner still works on it."""

    def __init__(self, sink, handle: Handle, accepted: Accepted, offered: tuple[str, ...] = (),
                 splitter: Splitter | None = None):
        self._sink, self._handle, self._accepted = sink, handle, accepted
        tool_format = accepted.tool_format
        self._reader = IncrementalToolParser(parser_for(tool_format, offered)) if tool_format else None
        self._splitter = splitter  # a thinking model's reasoning, read apart before the answer (reasoning.py)
        self._reasoning: list[str] = []
        self._answer: list[str] = []
        self._reasoning_tokens = 0
        self._ended = False

    @property
    def cancelled(self) -> bool:
        return self._handle.cancelled

    def accept(self) -> None:
        """The runner took the request (its first event; see Runner._queue): said at once, not
        at the next step's flush, as the request may wait for a place in the batch."""
        self._sink.put(self._accepted)
        self._sink.flush()

    def piece(self, text: str, output_tokens: int, tokens: tuple[GeneratedToken, ...] = ()) -> None:
        """New text of the answer (may be empty when only `tokens` are new: a token whose text is
        held back) with the count of tokens generated so far."""
        if self._splitter is None:
            return self._put_answer(text, output_tokens, tokens)
        self._put_parts(self._splitter.feed(text) if text else [], output_tokens, tokens)

    def _put_parts(self, parts: list[tuple[bool, str]], output_tokens: int, tokens: tuple) -> None:
        """A thinking model's text, split: reasoning as marked Text, the answer on its way."""
        for reasoning, text in parts:
            if reasoning:
                self._reasoning.append(text)
                self._sink.put(Text(text, output_tokens, tokens, reasoning=True))
            else:
                self._answer.append(text)
                self._put_answer(text, output_tokens, tokens)
            tokens = ()
        if not self._splitter.closed:  # still thinking (or never did): every token so far counts
            self._reasoning_tokens = output_tokens if self._splitter.thought else 0
        if tokens:  # tokens whose text is held back (a marker arriving)
            self._sink.put(Text("", output_tokens, tokens, reasoning=not self._splitter.closed and self._splitter.thought))

    def _put_answer(self, text: str, output_tokens: int, tokens: tuple) -> None:
        if self._reader is None:
            if text or tokens:
                self._sink.put(Text(text, output_tokens, tokens))
        elif text or tokens:
            self._put_deltas(self._reader.feed(text) if text else [], output_tokens, tokens)

    def flush(self) -> None:
        """The runner has put all it has for now (a batching step's tokens)."""
        self._sink.flush()

    def end(self, result: GenerationResult | None = None, error: BaseException | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        if error is not None:
            self._sink.put(Failed(error))
            return
        if self._splitter is not None:
            tokens = result.output_tokens if result is not None else self._reasoning_tokens
            self._put_parts(self._splitter.finish(), tokens, ())
            if result is not None:
                result = result.with_reasoning("".join(self._reasoning), "".join(self._answer), self._reasoning_tokens)
        if result is not None and self._reader is not None and result.finish_reason != "cancelled":
            deltas, answer = self._reader.finish()
            self._put_deltas(deltas, result.output_tokens, ())
            if answer.tool_calls:
                reason = "tool_calls" if result.finish_reason == "stop" else result.finish_reason
                result = result.with_calls(answer.content, answer.tool_calls, reason)
        self._sink.put(End(result))

    def _put_deltas(self, deltas: list, output_tokens: int, tokens: tuple) -> None:
        text = "".join(d.text for d in deltas if isinstance(d, TextDelta))
        if text or tokens:
            self._sink.put(Text(text, output_tokens, tokens))
        for delta in deltas:
            if not isinstance(delta, TextDelta):
                self._sink.put(delta)


class _Queue(queue.SimpleQueue):
    """A TextStream's own sink: every event is for one reader, who wakes per event."""

    def flush(self) -> None:
        pass


class TextStream:
    """Text pieces of one generation, as they are produced; `result` once it has ended.

        with engine.stream("Tell me a story") as stream:
            for piece in stream:
                print(piece, end="")
        print(stream.result.finish_reason, stream.result.output_tokens)
    """

    def __init__(self, handle: Handle | None = None):
        self.handle = handle or Handle()
        self.sink = _Queue()
        self._pieces: list[str] = []
        self._reasoning: list[str] = []
        self._tokens = 0
        self._accepted = Accepted(0)
        self._started = time.perf_counter()
        self._first_piece_at: float | None = None
        self._on_result: list[Callable[[GenerationResult], None]] = []
        self.tool_calls: list = []  # the calls' deltas as they stream (ToolCallDelta), when tools were offered
        self.result: GenerationResult | None = None

    def wait_accepted(self, timeout_s: float | None = None) -> "TextStream":
        """Wait for the engine to take the request; raise what refused it (PromptError,
        OptionsError, EngineStoppedError...), or EngineError after `timeout_s`, cancelling it."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            try:
                event = self.sink.get(timeout=_POLL_S)
                break
            except queue.Empty:
                if deadline is not None and time.monotonic() > deadline:
                    self.handle.cancel()  # it may still start: it must not run for nobody
                    self.result = self._measured("error")
                    raise EngineError(f"The engine did not take the request within {timeout_s:g} s; "
                                      "it may be overloaded. Retry, or restart it.") from None
        if isinstance(event, Failed):
            self.result = self._measured("error")
            raise event.error
        self._accepted = event
        return self

    @property
    def text(self) -> str:
        """What has streamed so far (the whole answer once the stream has ended)."""
        return "".join(self._pieces)

    @property
    def input_tokens(self) -> int:
        """Prompt tokens as the model is fed them."""
        return self._accepted.input_tokens

    @property
    def dropped_messages(self) -> int:
        """Oldest chat messages left out to fit the context."""
        return self._accepted.dropped_messages

    @property
    def tool_format(self) -> str | None:
        """Tools offered: the format the model writes their calls in."""
        return self._accepted.tool_format

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
            event = self._next_text()
            if event.text and not event.reasoning:
                return event.text

    def pieces(self) -> Iterator[Text]:
        """Every Text event (events.py), a thinking model's reasoning included (`reasoning`
        True), where iterating gives only the answer's text pieces."""
        while True:
            try:
                yield self._next_text()
            except StopIteration:
                return

    @property
    def reasoning(self) -> str:
        """A thinking model's reasoning so far, read apart from the answer (see `pieces`)."""
        return "".join(self._reasoning)

    def tokens(self) -> Iterator[GeneratedToken]:
        """The generated tokens one by one (id, text, logprob), instead of text pieces; needs
        GenerationOptions(logprobs=True). The stream's text and result fill as with iteration."""
        while True:
            try:
                event = self._next_text()
            except StopIteration:
                return
            yield from event.tokens

    def _next_text(self) -> Text:
        while self.result is None:
            event = self._next_event()
            if is_last(event):
                self._finish(event)
                break
            if isinstance(event, Text):
                self._tokens = event.output_tokens
                self._first_piece_at = self._first_piece_at or time.perf_counter()
                (self._reasoning if event.reasoning else self._pieces).append(event.text)
                return event
            self.tool_calls.append(event)
        raise StopIteration

    def close(self) -> None:
        """Stop generating. Unless the stream had already ended, the result is "cancelled" and
        holds what the caller received: its text and token count. Never waits for the runner."""
        if self.result is not None:
            return
        self.handle.cancel()
        self._set_result(self._measured("cancelled"))

    def __enter__(self) -> "TextStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        if self.result is None:
            self.handle.cancel()  # abandoned: the runner drops it at its next token

    def _next_event(self):
        while True:
            try:
                return self.sink.get(timeout=_POLL_S)
            except queue.Empty:
                continue

    def _finish(self, last) -> None:
        if self.result is not None:  # close()d from another thread while this one waited: keep "cancelled"
            return
        if isinstance(last, Failed):
            self._set_result(self._measured("error"))
            raise last.error
        # No result: the runner dropped the request (the engine closed) before this caller closed it.
        self._set_result(last.result if last.result is not None else self._measured("cancelled"))

    def _set_result(self, result: GenerationResult) -> None:
        self.result = result
        for callback in self._on_result:
            callback(result)

    def _measured(self, reason: str) -> GenerationResult:
        metrics = Metrics.timed(self._started, self._first_piece_at, self._tokens)
        return GenerationResult(text=self.text, input_tokens=self.input_tokens, output_tokens=self._tokens,
                                finish_reason=reason, metrics=metrics, dropped_messages=self.dropped_messages,
                                reasoning=self.reasoning)
