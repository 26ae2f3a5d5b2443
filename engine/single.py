"""The single-stream runner: one LLMPipeline, one worker thread, requests served in arrival order.

genai's LLMPipeline.generate must not be entered from two threads at once, so only the worker
ever calls it; callers get a TextStream and never hold the pipeline. This is the fastest mode to
start (SDPA, see options.py) and the default for one-process apps. A chat turn is sent as a
ChatHistory, so the pipeline reuses the KV cache of the history it has already seen.
"""

from __future__ import annotations

import queue
import threading
import warnings

import openvino_genai as ov_genai

from .errors import EngineError
from .prompt import PreparedPrompt
from .results import GenerationResult, Metrics
from .stream import Feed, TextStream
from .tool_use import with_tool_calls

_FINISH = {ov_genai.GenerationFinishReason.LENGTH: "length"}  # STOP: EOS, a stop token or a stop string


class _Streamer(ov_genai.StreamerBase):
    """Counts tokens and turns them into whole-character text pieces (genai's TextStreamer holds
    back incomplete UTF-8); answers STOP once the caller has cancelled."""

    def __init__(self, tokenizer: ov_genai.Tokenizer, feed: Feed):
        super().__init__()
        self.feed = feed
        self.tokens = 0
        self.pieces: list[str] = []
        self._text = ov_genai.TextStreamer(tokenizer, self._on_text)

    def write(self, token) -> ov_genai.StreamingStatus:
        self.tokens += len(token) if isinstance(token, list) else 1
        self._text.write(token)
        return ov_genai.StreamingStatus.CANCEL if self.feed.cancelled else ov_genai.StreamingStatus.RUNNING

    def end(self) -> None:
        self._text.end()

    def _on_text(self, text: str) -> ov_genai.StreamingStatus:
        self.pieces.append(text)
        self.feed.piece(text, self.tokens)
        self.feed.flush()
        return ov_genai.StreamingStatus.RUNNING


class SingleRunner:
    mode = "single"

    def __init__(self, pipeline: ov_genai.LLMPipeline):
        self.pipeline = pipeline
        self._tokenizer = pipeline.get_tokenizer()
        self._requests: queue.Queue = queue.Queue()
        self._busy = False
        self._chat_mode: bool | None = None  # was the last call a ChatHistory? (see _enter_mode)
        self._thread = threading.Thread(target=self._serve, name="ovchat-single", daemon=True)
        self._thread.start()

    def submit(self, prepared: PreparedPrompt, config: ov_genai.GenerationConfig, events=None) -> TextStream:
        stream = TextStream(prepared.input_tokens, prepared.dropped_messages, events=events)
        self._requests.put((prepared, config, Feed(stream)))
        return stream

    def generation_config(self) -> ov_genai.GenerationConfig:
        """A fresh copy of the model's own generation config (its stop token ids included)."""
        return self.pipeline.get_generation_config()

    def waiting(self) -> int:
        return self._requests.qsize()

    def running(self) -> int:
        return int(self._busy)

    def kv_cache_usage(self) -> float | None:
        return None  # the stateful pipeline does not report it

    def close(self) -> None:
        self._requests.put(None)

    def _serve(self) -> None:
        while (item := self._requests.get()) is not None:
            self._busy = True
            try:
                self._run(*item)
            finally:
                self._busy = False

    def _run(self, prepared: PreparedPrompt, config: ov_genai.GenerationConfig, feed: Feed) -> None:
        if feed.cancelled:
            return feed.end(None)
        streamer = _Streamer(self._tokenizer, feed)
        # genai returns a bare str for a str input; a one-item batch returns results with perf metrics.
        inputs = [prepared.inputs] if isinstance(prepared.inputs, str) else prepared.inputs
        try:
            self._enter_mode(isinstance(inputs, ov_genai.ChatHistory))
            results = self.pipeline.generate(inputs, config, streamer)
        except Exception as error:  # the plugin's own message, made one line and actionable
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            return feed.end(error=EngineError(f"Generation failed in OpenVINO: {first}. "
                                              "Try a shorter prompt or fewer new tokens, or reload the model."))
        reasons = getattr(results, "finish_reasons", None) or [None]
        feed.end(with_tool_calls(GenerationResult(
            text="".join(streamer.pieces),
            input_tokens=prepared.input_tokens,
            output_tokens=streamer.tokens,
            finish_reason="cancelled" if feed.cancelled else _FINISH.get(reasons[0], "stop"),
            metrics=Metrics.from_perf(results.perf_metrics),
            dropped_messages=prepared.dropped_messages,
        ), prepared.tool_format))

    def _enter_mode(self, chat: bool) -> None:
        # With a ChatHistory the stateful pipeline keeps the conversation's KV cache between
        # calls. Switching between that and plain text or token ids without ending the chat
        # hangs or crashes genai 2026.4 with SDPA (measured); finish_chat() ends it cleanly.
        if self._chat_mode is not None and chat != self._chat_mode:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                self.pipeline.finish_chat()
        self._chat_mode = chat

