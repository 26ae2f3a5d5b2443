"""The single-stream runner: one LLMPipeline, one worker thread, requests served in arrival order.

genai's LLMPipeline.generate must not be entered from two threads at once, so only the worker
ever calls it; callers get a TextStream and never hold the pipeline. This is the fastest mode to
start (SDPA, see options.py) and the default for one-process apps. A chat turn is sent as a
ChatHistory, so the pipeline reuses the KV cache of the history it has already seen.

Faults: a generate() that raises fails its own request. Anything else that fails in the worker
stops it: the request in hand and every queued one end with an EngineError saying what failed,
`failure` says it too (Engine.stopped), and later submits raise at once (runner.py: the
lifecycle both runners share). `close()` stops the generation in hand at its next token and
ends it and the queued ones as cancelled.
"""

from __future__ import annotations

import queue
import warnings

import openvino_genai as ov_genai

from .errors import EngineError
from .results import GenerationResult, Metrics
from .runner import Runner, end_alone, generation_failed
from .stream import Feed
from .text_streamer import SafeTextStreamer

_FINISH = {ov_genai.GenerationFinishReason.LENGTH: "length"}  # STOP: EOS, a stop token or a stop string


class _Streamer(ov_genai.StreamerBase):
    """Counts tokens and turns them into whole-character text pieces (genai's TextStreamer holds
    back incomplete UTF-8); answers STOP once the caller has cancelled or the runner is closing."""

    def __init__(self, tokenizer: ov_genai.Tokenizer, feed: Feed, stopping, text_streamer=SafeTextStreamer):
        super().__init__()
        self.feed = feed
        self.tokens = 0
        self.pieces: list[str] = []
        self.error: Exception | None = None  # what failed while turning tokens into text
        self._stopping = stopping
        self._text = text_streamer(tokenizer, self._on_text)

    def write(self, token) -> ov_genai.StreamingStatus:
        self.tokens += len(token) if isinstance(token, list) else 1
        try:
            self._text.write(token)
        except Exception as error:  # an exception thrown through genai can leave its infer request busy:
            self.error = error.with_traceback(None)  # stop cleanly instead, fail it afterwards (no frames kept:
            # they hold the text streamer, whose native callback would keep this request alive)
            return ov_genai.StreamingStatus.CANCEL
        stop = self.feed.cancelled or self._stopping()
        return ov_genai.StreamingStatus.CANCEL if stop else ov_genai.StreamingStatus.RUNNING

    def end(self) -> None:
        try:
            self._text.end()
        except Exception as error:
            self.error = self.error or error.with_traceback(None)

    def release(self) -> None:
        """Drop the TextStreamer: its callback refers back to this object, a cycle through native
        code that Python's collector cannot see (every finished request would stay alive)."""
        self._text = None

    def _on_text(self, text: str) -> ov_genai.StreamingStatus:
        self.pieces.append(text)
        self.feed.piece(text, self.tokens)
        self.feed.flush()
        return ov_genai.StreamingStatus.RUNNING


class SingleRunner(Runner):
    mode = "single"

    def __init__(self, pipeline: ov_genai.LLMPipeline, text_streamer=SafeTextStreamer):
        self._text_streamer = text_streamer
        self._tokenizer = pipeline.get_tokenizer()
        self._requests: queue.Queue = queue.Queue()
        self._busy = False
        self._chat_mode: bool | None = None  # was the last call a ChatHistory? (see _enter_mode)
        super().__init__(pipeline, "ovchat-worker")

    def submit(self, inputs, input_tokens: int, config: ov_genai.GenerationConfig, feed: Feed,
               dropped_messages: int = 0) -> None:
        """Queue `inputs` (a str, a ChatHistory or a tensor of token ids; `input_tokens` of them);
        its events go to `feed`."""
        self._queue(feed, lambda: self._requests.put((inputs, input_tokens, dropped_messages, config, feed)))

    def generation_config(self) -> ov_genai.GenerationConfig:
        """A fresh copy of the model's own generation config (its stop token ids included)."""
        return self.pipeline.get_generation_config()

    def waiting(self) -> int:
        return self._requests.qsize()

    def running(self) -> int:
        return int(self._busy)

    def kv_cache_usage(self) -> float | None:
        return None  # the stateful pipeline does not report it

    def _wake(self) -> None:
        self._requests.put(None)  # the generation in hand stops at its next token (the streamer asks)

    # ---- the worker thread ---------------------------------------------------------------------

    def _serve(self) -> None:
        self._in_hand = None
        while (item := self._requests.get()) is not None:
            self._busy, self._in_hand = True, item
            if self.closing:  # closed: what is still queued ends as cancelled
                item[-1].end(None)
            else:
                self._run(*item)
            self._busy, self._in_hand = False, None  # not kept alive while the worker waits for the next one

    def _end_all(self, error: EngineError | None) -> None:
        pending = [self._in_hand]
        while not self._requests.empty():
            pending.append(self._requests.get_nowait())
        for item in pending:
            if item is None:
                continue
            if error is None:
                item[-1].end(None)  # closed: cancelled
            else:
                end_alone(item[-1], error)
        self._busy, self._in_hand = False, None

    def _run(self, inputs, input_tokens: int, dropped_messages: int, config: ov_genai.GenerationConfig,
             feed: Feed) -> None:
        if feed.cancelled:
            return feed.end(None)
        streamer = _Streamer(self._tokenizer, feed, lambda: self.closing, self._text_streamer)
        # genai returns a bare str for a str input; a one-item batch returns results with perf metrics.
        inputs = [inputs] if isinstance(inputs, str) else inputs
        try:
            self._enter_mode(isinstance(inputs, ov_genai.ChatHistory))
            results = self.pipeline.generate(inputs, config, streamer)
        except Exception as error:  # the plugin's own message, made one line and actionable
            return end_alone(feed, generation_failed(error))
        finally:
            streamer.release()
        if streamer.error is not None:  # this request's text could not be made or delivered: it fails alone
            return end_alone(feed, generation_failed(streamer.error))
        reasons = getattr(results, "finish_reasons", None) or [None]
        cancelled = feed.cancelled or self.closing
        feed.end(GenerationResult(
            text="".join(streamer.pieces),
            input_tokens=input_tokens,
            output_tokens=streamer.tokens,
            finish_reason="cancelled" if cancelled else _FINISH.get(reasons[0], "stop"),
            metrics=Metrics.from_perf(results.perf_metrics),
            dropped_messages=dropped_messages,
        ))

    def _enter_mode(self, chat: bool) -> None:
        # With a ChatHistory the stateful pipeline keeps the conversation's KV cache between
        # calls. Switching between that and plain text or token ids without ending the chat
        # hangs or crashes genai 2026.4 with SDPA (measured); finish_chat() ends it cleanly.
        if self._chat_mode is not None and chat != self._chat_mode:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                self.pipeline.finish_chat()
        self._chat_mode = chat
