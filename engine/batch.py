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
raise at once. `close()` ends open and queued streams as cancelled. A request that ends releases
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

from .errors import EngineError, EngineStoppedError, PromptError, reason
from .prompt import PreparedPrompt
from .results import GeneratedToken, GenerationResult, Metrics
from .stream import Feed, TextStream
from .text_streamer import SafeTextStreamer
from .tool_use import with_tool_calls

log = logging.getLogger("ovchat.engine")
_Status = ov_genai.GenerationStatus
_FINISH = {ov_genai.GenerationFinishReason.LENGTH: "length", ov_genai.GenerationFinishReason.STOP: "stop"}
_MAX_FAILED_STEPS = 2  # in a row: the pipeline itself is broken (e.g. genai refusing every later step)
CLOSED = "The engine was closed; load it again to generate."
_CLOSE_WAIT_S = 10


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

    def release(self) -> None:
        """Drop what ties this request to genai: its handle, and its streamer, whose callback
        refers back to this request."""
        self.handle = self.streamer = None


class BatchRunner:
    mode = "batch"

    def __init__(self, pipeline: ov_genai.ContinuousBatchingPipeline, encode, text_streamer=SafeTextStreamer):
        self.pipeline = pipeline
        self._encode = encode  # text -> token ids, as the model is fed (see Engine)
        self._text_streamer = text_streamer
        self._tokenizer = pipeline.get_tokenizer()
        self._incoming: queue.Queue = queue.Queue()
        self._active: dict[int, _Request] = {}
        self._ids = itertools.count()
        self._wake = threading.Event()
        self._closed = False
        self._lock = threading.Lock()         # a submit against the scheduler's last drain of the queue
        self._refusing: str | None = None     # why submits are refused, once the runner has stopped
        self.failure: str | None = None       # why the scheduler stopped, if it failed
        self._failed_steps = 0
        self._thread = threading.Thread(target=self._serve, name="ovchat-scheduler", daemon=True)
        self._thread.start()

    def submit(self, prepared: PreparedPrompt, config: ov_genai.GenerationConfig, events=None) -> TextStream:
        ids = self._encode(prepared)
        stream = TextStream(len(ids), prepared.dropped_messages, on_cancel=self._wake.set, events=events)
        with self._lock:
            if self._refusing is not None:
                stream.never_started()
                raise EngineStoppedError(self._refusing)
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
        """Stop the scheduler after its current step; open and queued streams end as cancelled."""
        self._closed = True
        self._wake.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(_CLOSE_WAIT_S)

    # ---- the scheduler thread ------------------------------------------------------------------

    def _serve(self) -> None:
        try:
            while not self._closed:
                self._admit()
                if not self._active:
                    self._wake.wait()
                    self._wake.clear()
                    continue
                self._step()
        except Exception as error:  # a broken pipeline or a bug: everyone hears of it, nobody waits forever
            log.exception("ovchat: the batching scheduler failed")
            failure = (f"The engine's scheduler failed ({type(error).__name__}: {reason(error)}); every "
                       "request in flight was ended. Reload the engine (`ovchat serve` restarts its engine process).")
            self._stop(EngineStoppedError(failure), failure)
            self.failure = failure  # last: an engine process exits when it sees it (process.py)
            return
        self._stop(None, CLOSED)

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
                self._drop(None, request, error=_engine_error(error))
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
                self._drop(request_id, request, error=_engine_error(error))
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
            self._drop(request_id, request, error=_engine_error(error))

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
        try:
            request.feed.end(result, error)
        except Exception as sink_error:  # a caller's event sink failed: nothing more to tell it
            log.warning("ovchat: could not end a stream: %s", f"{type(sink_error).__name__}: {sink_error}")

    def _stop(self, error: EngineError | None, why: str) -> None:
        with self._lock:  # no submit gets into the queue after this
            self._refusing = why
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
        texts = token_texts(self._tokenizer, [r.id for r in request.records[-_CONTEXT_TOKENS:]], ids)
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
        result = GenerationResult(text="".join(request.pieces), input_tokens=len(request.ids),
                                  output_tokens=request.tokens, finish_reason=reason_, metrics=metrics,
                                  dropped_messages=request.prepared.dropped_messages, tokens=tuple(request.records))
        return with_tool_calls(result, request.prepared.tool_format, request.prepared.options.tools)


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
    if isinstance(error, EngineError):
        return error
    return EngineError(f"Generation failed in OpenVINO: {reason(error)}. Try a shorter prompt or fewer new tokens, "
                       "or reload the model.")
