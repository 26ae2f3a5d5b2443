"""The batching runner: ContinuousBatchingPipeline driven by one scheduler thread.

Callers on any thread submit requests; the scheduler adds them between steps, steps the
pipeline (every running request advances one token per step, new prompts are prefilled in the
same step), reads each request's new tokens and streams them as text. A cancelled request is
cancelled in genai at once, which frees its KV-cache blocks. Prompts go in as token ids that
the engine has templated and counted, so usage figures are exactly what the model was fed.

Faults: what goes wrong while admitting or advancing one request ends that request alone, with
an EngineError. A failed step() fails the requests in it; a second failure in a row, or any
failure of the scheduler loop itself, stops the runner: every open and queued stream ends with
an EngineError that says what failed, `failure` says it too (Engine.stopped), and later submits
raise at once (runner.py: the lifecycle both runners share). `close()` ends open and queued streams as cancelled. A request that ends releases
its genai handle and streamer (whose callback refers back to it: a cycle through native code
that Python's collector cannot see, so without the release every finished request stayed alive).

Why one thread: genai's pipelines must be stepped from one place. The Python binding of step()
keeps the GIL for the whole step, so other Python threads of this process run between steps,
not during them: a server runs this engine in a process of its own (process.py).
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import openvino as ov
import openvino_genai as ov_genai

from .errors import EngineError, PromptError
from .results import GeneratedToken, GenerationResult, Metrics
from .runner import Runner, end_alone, generation_failed
from .stream import Feed
from .text_streamer import CONTEXT_TOKENS, SafeTextStreamer, texts_after

log = logging.getLogger("ovchat.engine")
_Status = ov_genai.GenerationStatus
_FINISH = {ov_genai.GenerationFinishReason.LENGTH: "length", ov_genai.GenerationFinishReason.STOP: "stop"}
_MAX_FAILED_STEPS = 2  # in a row: the pipeline itself is broken (e.g. genai refusing every later step)


@dataclass
class _Request:
    ids: list[int]
    config: ov_genai.GenerationConfig
    feed: Feed
    dropped_messages: int = 0
    submitted: float = field(default_factory=time.perf_counter)
    handle: object = None
    streamer: object = None
    pieces: list = field(default_factory=list)
    tokens: int = 0
    first_token_at: float | None = None
    records: list = field(default_factory=list)  # GeneratedTokens (logprobs requested), all so far
    unsent: int = 0                               # how many of them no text piece has carried yet

    def release(self) -> None:
        """Drop what ties this request to genai: its handle, and its streamer, whose callback
        refers back to this request."""
        self.handle = self.streamer = None


class BatchRunner(Runner):
    mode = "batch"

    def __init__(self, pipeline: ov_genai.ContinuousBatchingPipeline, text_streamer=SafeTextStreamer):
        self._text_streamer = text_streamer
        self._tokenizer = pipeline.get_tokenizer()
        self._incoming: queue.Queue = queue.Queue()
        self._active: dict[int, _Request] = {}
        self._ids = itertools.count()
        self._wake_up = threading.Event()
        self._failed_steps = 0
        super().__init__(pipeline, "ovchat-scheduler")

    def submit(self, ids: list[int], config: ov_genai.GenerationConfig, feed: Feed, dropped_messages: int = 0) -> None:
        """Queue a prompt, as the token ids the model is fed; its events go to `feed`."""
        self._queue(feed, lambda: self._incoming.put(_Request(list(ids), config, feed, dropped_messages)))
        self._wake()

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

    def _wake(self) -> None:
        self._wake_up.set()

    wake_on_cancel = _wake  # its KV-cache blocks go back at once, even while nothing else runs

    # ---- the scheduler thread ------------------------------------------------------------------

    def _serve(self) -> None:
        while not self.closing:
            self._admit()
            if not self._active:
                self._wake_up.wait()
                self._wake_up.clear()
                continue
            self._step()

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
            try:
                tensor = ov.Tensor(np.array([request.ids], dtype=np.int64))
                request.handle = self.pipeline.add_request(request_id, tensor, request.config)
                request.streamer = self._text_streamer(self._tokenizer, lambda text, r=request: self._on_text(r, text))
            except Exception as error:  # this request's own fault (its ids, its config): it fails alone
                self._drop(None, request, error=generation_failed(error))
                continue
            self._active[request_id] = request

    def _step(self) -> None:
        try:
            self.pipeline.step()
        except Exception as error:  # fails the requests in this step; twice in a row, the scheduler
            self._failed_steps += 1
            if self._failed_steps >= _MAX_FAILED_STEPS:
                raise
            for request_id, request in list(self._active.items()):
                self._drop(request_id, request, error=generation_failed(error))
            return
        self._failed_steps = 0
        advanced = list(self._active.items())
        for request_id, request in advanced:
            self._alone(request_id, request, self._advance)
        for request_id, request in advanced:  # one hand-off per step, not one per token (process.py, the server)
            self._alone(request_id, request, lambda _, r: r.feed.flush())

    def _alone(self, request_id: int, request: _Request, work) -> None:
        """Run `work` on one request; if it raises, that request fails and the others go on."""
        try:
            work(request_id, request)
        except Exception as error:  # logged as text: the error's traceback holds this request's frames
            log.warning("ovchat: request %d failed: %s", request_id, f"{type(error).__name__}: {error}")
            self._drop(request_id, request, error=generation_failed(error))

    def _advance(self, request_id: int, request: _Request) -> None:
        handle = request.handle
        if handle is None:  # ended earlier in this step
            return
        if request.feed.cancelled:
            return self._drop(request_id, request)  # its KV blocks are freed at the next step
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
        if status == _Status.IGNORED:
            return self._drop(request_id, request, error=PromptError(
                "The prompt does not fit in the KV cache; shorten it or load with a larger kv_cache_gb."))
        request.streamer.end()
        if request.unsent:  # tokens whose text never came (an end-of-turn token has none)
            request.feed.piece("", request.tokens, self._take_unsent(request))
        reason_ = _FINISH.get(output.finish_reason, "stop") if output is not None else "stop"
        self._drop(request_id, request, result=self._result(request, reason_))

    def _drop(self, request_id: int | None, request: _Request, result: GenerationResult | None = None,
              error: BaseException | None = None) -> None:
        """End one request: out of the batch (cancelled in genai unless it finished), its stream
        ended, everything it held released."""
        self._active.pop(request_id, None)
        if request.handle is not None and result is None:
            try:
                request.handle.cancel()
            except Exception:  # a handle of a broken pipeline: nothing more to free
                pass
        request.release()
        if error is None:
            try:
                request.feed.end(result)
            except Exception as sink_error:  # a caller's event sink failed: nothing more to tell it
                log.warning("ovchat: could not end a stream: %s", f"{type(sink_error).__name__}: {sink_error}")
        else:
            end_alone(request.feed, error)

    def _end_all(self, error: EngineError | None) -> None:
        for request_id, request in list(self._active.items()):
            self._drop(request_id, request, error=error)
        while True:
            try:
                request = self._incoming.get_nowait()
            except queue.Empty:
                break
            self._drop(None, request, error=error)

    def _on_text(self, request: _Request, text: str) -> ov_genai.StreamingStatus:
        request.pieces.append(text)
        request.feed.piece(text, request.tokens, self._take_unsent(request))
        return ov_genai.StreamingStatus.RUNNING

    def _record(self, request: _Request, ids: list[int], logprobs: list[float]) -> None:
        context = [r.id for r in request.records[-CONTEXT_TOKENS:]]
        pairs = []
        for token in ids:  # each token's own text: the text it adds after the few before it
            pairs.append((context[-CONTEXT_TOKENS:], [token]))
            context.append(token)
        texts = texts_after(self._tokenizer, pairs)
        request.records.extend(GeneratedToken(i, t, lp) for i, t, lp in zip(ids, texts, logprobs))
        request.unsent += len(ids)

    @staticmethod
    def _take_unsent(request: _Request) -> tuple:
        if not request.unsent:
            return ()
        taken, request.unsent = tuple(request.records[-request.unsent:]), 0
        return taken

    def _result(self, request: _Request, reason_: str) -> GenerationResult:
        # Timed here, per request: genai's pipeline-wide perf metrics mix every request of a step.
        metrics = Metrics.timed(request.submitted, request.first_token_at, request.tokens)
        return GenerationResult(text="".join(request.pieces), input_tokens=len(request.ids),
                                output_tokens=request.tokens, finish_reason=reason_, metrics=metrics,
                                dropped_messages=request.dropped_messages, tokens=tuple(request.records))
