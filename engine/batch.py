"""The batching runner: ContinuousBatchingPipeline driven by one scheduler thread.

Callers on any thread submit requests; the scheduler adds them between steps, steps the
pipeline (every running request advances one token per step, new prompts are prefilled in the
same step), reads each request's new tokens and streams them as text. A cancelled request is
cancelled in genai at once, which frees its KV-cache blocks. Prompts go in as token ids that
the engine has templated and counted, so usage figures are exactly what the model was fed.

Why one thread: genai's pipelines must be stepped from one place. The Python binding of step()
keeps the GIL for the whole step, so other Python threads of this process run between steps,
not during them: a server runs this engine in a process of its own (process.py).
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import openvino as ov
import openvino_genai as ov_genai

from .errors import EngineError, PromptError
from .prompt import PreparedPrompt
from .results import GeneratedToken, GenerationResult, Metrics
from .stream import Feed, TextStream
from .tool_use import with_tool_calls

_Status = ov_genai.GenerationStatus
_FINISH = {ov_genai.GenerationFinishReason.LENGTH: "length", ov_genai.GenerationFinishReason.STOP: "stop"}


@dataclass
class _Request:
    ids: list[int]
    prepared: PreparedPrompt
    config: ov_genai.GenerationConfig
    feed: Feed
    submitted: float = field(default_factory=time.perf_counter)
    handle: object = None
    streamer: object = None
    pieces: list = field(default_factory=list)
    tokens: int = 0
    first_token_at: float | None = None
    records: list = field(default_factory=list)  # GeneratedTokens (logprobs requested), all so far
    unsent: int = 0                               # how many of them no text piece has carried yet


class BatchRunner:
    mode = "batch"

    def __init__(self, pipeline: ov_genai.ContinuousBatchingPipeline, encode):
        self.pipeline = pipeline
        self._encode = encode  # text -> token ids, as the model is fed (see Engine)
        self._tokenizer = pipeline.get_tokenizer()
        self._incoming: queue.Queue = queue.Queue()
        self._active: dict[int, _Request] = {}
        self._ids = itertools.count()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="ovchat-scheduler", daemon=True)
        self._thread.start()

    def submit(self, prepared: PreparedPrompt, config: ov_genai.GenerationConfig, events=None) -> TextStream:
        ids = self._encode(prepared)
        stream = TextStream(len(ids), prepared.dropped_messages, on_cancel=self._wake.set, events=events)
        self._incoming.put(_Request(ids, prepared, config, Feed(stream)))
        self._wake.set()
        return stream

    def generation_config(self) -> ov_genai.GenerationConfig:
        """A fresh copy of the model's own generation config (its stop token ids included)."""
        return self.pipeline.get_config()

    def waiting(self) -> int:
        return self._incoming.qsize()

    def running(self) -> int:
        return len(self._active)

    def kv_cache_usage(self) -> float | None:
        """Share of the KV cache in use, 0..1 (genai reports a percentage)."""
        return self.pipeline.get_metrics().cache_usage / 100

    def close(self) -> None:
        self._closed = True
        self._wake.set()

    def _serve(self) -> None:
        while not self._closed:
            self._admit()
            if not self._active:
                self._wake.wait()
                self._wake.clear()
                continue
            try:
                self.pipeline.step()
            except Exception as error:  # a failed step fails every request in it, not the server
                self._fail_all(error)
                continue
            advanced = list(self._active.items())
            for request_id, request in advanced:
                self._advance(request_id, request)
            for _, request in advanced:  # one hand-off per step, not one per token (process.py, the server)
                request.feed.flush()

    def _admit(self) -> None:
        while True:
            try:
                request = self._incoming.get_nowait()
            except queue.Empty:
                return
            if request.feed.cancelled:
                request.feed.end(None)
                continue
            request_id = next(self._ids)
            tensor = ov.Tensor(np.array([request.ids], dtype=np.int64))
            try:
                request.handle = self.pipeline.add_request(request_id, tensor, request.config)
            except Exception as error:
                request.feed.end(error=_engine_error(error))
                continue
            request.streamer = ov_genai.TextStreamer(self._tokenizer, lambda text, r=request: self._on_text(r, text))
            self._active[request_id] = request

    def _advance(self, request_id: int, request: _Request) -> None:
        handle = request.handle
        if request.feed.cancelled:
            handle.cancel()  # frees its KV blocks at the next step
            del self._active[request_id]
            return request.feed.end(None)
        output = None
        if handle.can_read():
            for output in handle.read().values():
                if output.generated_ids:
                    request.first_token_at = request.first_token_at or time.perf_counter()
                    request.tokens += len(output.generated_ids)
                    if request.config.logprobs:
                        self._record(request, list(output.generated_ids), list(output.generated_log_probs))
                    request.streamer.write(list(output.generated_ids))
        status = handle.get_status()
        if status == _Status.RUNNING:
            return
        del self._active[request_id]
        if status == _Status.IGNORED:
            return request.feed.end(error=PromptError(
                "The prompt does not fit in the KV cache; shorten it or load with a larger kv_cache_gb."))
        request.streamer.end()
        if request.unsent:  # tokens whose text never came (an end-of-turn token has none)
            request.feed.piece("", request.tokens, self._take_unsent(request))
        reason = _FINISH.get(output.finish_reason, "stop") if output is not None else "stop"
        request.feed.end(self._result(request, reason))

    def _on_text(self, request: _Request, text: str) -> ov_genai.StreamingStatus:
        request.pieces.append(text)
        request.feed.piece(text, request.tokens, self._take_unsent(request))
        return ov_genai.StreamingStatus.RUNNING

    def _record(self, request: _Request, ids: list[int], logprobs: list[float]) -> None:
        texts = token_texts(self._tokenizer, [r.id for r in request.records[-_CONTEXT_TOKENS:]], ids)
        request.records.extend(GeneratedToken(i, t, lp) for i, t, lp in zip(ids, texts, logprobs))
        request.unsent += len(ids)

    @staticmethod
    def _take_unsent(request: _Request) -> tuple:
        if not request.unsent:
            return ()
        taken, request.unsent = tuple(request.records[-request.unsent:]), 0
        return taken

    def _result(self, request: _Request, reason: str) -> GenerationResult:
        # Timed here, per request: genai's pipeline-wide perf metrics mix every request of a step.
        metrics = Metrics.timed(request.submitted, request.first_token_at, request.tokens)
        result = GenerationResult(text="".join(request.pieces), input_tokens=len(request.ids),
                                  output_tokens=request.tokens, finish_reason=reason, metrics=metrics,
                                  dropped_messages=request.prepared.dropped_messages, tokens=tuple(request.records))
        return with_tool_calls(result, request.prepared.tool_format)

    def _fail_all(self, error: Exception) -> None:
        for request in self._active.values():
            request.handle.cancel()
            request.feed.end(error=_engine_error(error))
        self._active.clear()


_CONTEXT_TOKENS = 4  # tokens before one that its text is decoded after (a word's start, a UTF-8 sequence)


def token_texts(tokenizer: ov_genai.Tokenizer, before: list[int], ids: list[int]) -> list[str]:
    """Each token's own text: the text it adds after the few tokens before it. (Decoded alone,
    a SentencePiece token loses its leading space, and part of a character decodes to U+FFFD.)"""
    context = list(before)
    sequences = []
    for token in ids:
        sequences += [context[-_CONTEXT_TOKENS:], context[-_CONTEXT_TOKENS:] + [token]]
        context.append(token)
    decoded = tokenizer.decode(sequences)
    texts = []
    for head, whole in zip(decoded[::2], decoded[1::2]):
        # Part of a character decodes to U+FFFD: it belongs to the token that completes it.
        head, whole = head.rstrip("\ufffd"), whole.rstrip("\ufffd")
        texts.append(whole[len(head):] if whole.startswith(head) else whole)
    return texts


def _engine_error(error: Exception) -> EngineError:
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return EngineError(f"Generation failed in OpenVINO: {first}. Try a shorter prompt or fewer new tokens, or reload the model.")
