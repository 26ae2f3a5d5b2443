"""Requests onto the engine: admission, options, streaming with cancellation, usage.

- Admission (`Slots`): at most `max_concurrency` generations run, at most `max_queue` requests
  wait for a slot; one more is refused at once with a 429 and Retry-After. A request with n > 1
  takes n slots. The engine (batching mode) is loaded with as many sequences as there are
  slots, so it never queues behind the server's back.
- A `Run` is one request's n generations. Each choice's events go from the engine's thread
  straight to the event loop, gathered per batching step (`_ChoiceSink`): no thread per
  stream, one wake-up of the loop per step, and the loop never blocks on the engine. Closing
  a Run (the client left, the response ended, or the server is draining) closes its streams:
  the engine cancels those requests at their next token and frees their KV-cache blocks, and
  the slots go to the next request at once.
- Prompts over the context are refused by the engine before anything runs (PromptError): 400.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque

import anyio

from ..engine import EngineStats, GenerationOptions
from ..engine.errors import EngineError, EngineStoppedError, OptionsError, PromptError
from ..engine.results import GenerationResult, Metrics
from ..engine.stream import StreamEnd
from .metrics import ServerMetrics
from .protocol import Choice, Sampling, bad_request, queue_full, server_error, unavailable

RETRY_AFTER_S = 1
ENGINE_RETRY_AFTER_S = 5  # an engine process restarts in seconds


def _api_error(error: BaseException):
    """A generation's error as the client sees it: a prompt the KV cache cannot hold is the
    request's fault (400); an engine that stopped under it, a 503 to retry; the rest, ours (500)."""
    if isinstance(error, PromptError):
        return bad_request(str(error))
    if isinstance(error, EngineStoppedError):
        return unavailable(str(error), code="engine_stopped", retry_after_s=ENGINE_RETRY_AFTER_S)
    return server_error(str(error))


class Slots:
    """FIFO admission on the event loop: `limit` slots, at most `queue_limit` requests waiting."""

    def __init__(self, limit: int, queue_limit: int):
        self.limit, self.queue_limit = limit, queue_limit
        self.in_use = 0
        self._waiters: deque[tuple[int, asyncio.Future]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self, n: int = 1) -> None:
        if not self._waiters and self.in_use + n <= self.limit:
            self.in_use += n
            return
        if len(self._waiters) >= self.queue_limit:
            raise queue_full(RETRY_AFTER_S)
        entry = (n, asyncio.get_running_loop().create_future())
        self._waiters.append(entry)
        try:
            await entry[1]
        except BaseException:  # the client left while waiting: give the place (or the slots) back
            if entry in self._waiters:
                self._waiters.remove(entry)
            elif entry[1].done() and not entry[1].cancelled():
                self.release(n)
            raise

    def release(self, n: int = 1) -> None:
        self.in_use -= n
        while self._waiters and self.in_use + self._waiters[0][0] <= self.limit:
            n_next, future = self._waiters.popleft()
            if not future.done():
                self.in_use += n_next
                future.set_result(None)


def generation_options(sampling: Sampling, default_max_tokens: int, chat: bool, index: int = 0) -> GenerationOptions:
    """The engine's options for choice `index` of a request. Greedy unless the request asks for
    sampling: a temperature > 0, or top_p / top_k without a temperature (OpenAI's default
    temperature is 1). A seed is offset per choice, so n sampled choices differ."""
    given_t = sampling.temperature
    sample = given_t > 0 if given_t is not None else (sampling.top_p is not None or sampling.top_k is not None)
    try:
        return GenerationOptions(
            max_new_tokens=sampling.max_tokens or default_max_tokens, do_sample=sample,
            temperature=given_t if sample and given_t is not None else 1.0,
            top_p=sampling.top_p if sampling.top_p is not None else 1.0, top_k=sampling.top_k or 0,
            repetition_penalty=sampling.repetition_penalty or 1.0, presence_penalty=sampling.presence_penalty,
            frequency_penalty=sampling.frequency_penalty, seed=None if sampling.seed is None else sampling.seed + index,
            stop=sampling.stop, apply_chat_template=chat, json_schema=sampling.json_schema,
            json_object=sampling.json_object, ignore_eos=sampling.ignore_eos)
    except OptionsError as error:
        raise bad_request(str(error)) from None


class _ChoiceSink:
    """One choice's events on their way from the engine's thread to the event loop: gathered,
    then handed over once per batching step (the runner's flush) or at the end, so a step of 16
    streams costs the loop one wake-up, and no thread per stream."""

    def __init__(self, run: "Run", index: int):
        self._run, self._index = run, index
        self._pending: list = []
        self._lock = threading.Lock()

    def put(self, event) -> None:
        with self._lock:
            self._pending.append(event)
        if isinstance(event, StreamEnd):
            self.flush()

    def flush(self) -> None:
        with self._lock:
            events, self._pending = self._pending, []
        if events:
            self._run._post(self._index, events)


class Run:
    """One request's generations; their events reach the event loop through `events()`."""

    def __init__(self, serving: "Serving", n: int):
        self._serving = serving
        self.n = n
        self.streams: list = []
        self.results: dict[int, GenerationResult] = {}  # each choice's, once it has ended
        self.started = time.perf_counter()
        self.first_piece_at: float | None = None
        self._received = [[] for _ in range(n)]  # (text, output tokens) of each choice so far
        self._first_at: list[float | None] = [None] * n
        self._loop = asyncio.get_running_loop()
        self._events: asyncio.Queue = asyncio.Queue()
        self._closed = False

    @property
    def prompt_tokens(self) -> int:
        return self.streams[0].input_tokens if self.streams else 0

    def start(self, engine, prompt, options) -> None:
        """Submit choice number len(self.streams) (from a worker thread: the engine templates
        and counts the prompt before it returns)."""
        self.streams.append(engine.stream(prompt, options, events=_ChoiceSink(self, len(self.streams))))

    def _post(self, index: int, events: list) -> None:  # any thread
        try:
            self._loop.call_soon_threadsafe(self._deliver, index, events)
        except RuntimeError:  # the loop has closed: the server is gone, nobody is listening
            pass

    def _deliver(self, index: int, events: list) -> None:  # on the loop
        for event in events:
            if not isinstance(event, StreamEnd):
                self._received[index].append(event)
                self._first_at[index] = self._first_at[index] or time.perf_counter()
                self._events.put_nowait((index, "piece", event[0]))
            elif event.error is not None:
                self._events.put_nowait((index, "error", event.error))
            elif index not in self.results:  # (None: cancelled, counted when it was closed)
                self.results[index] = event.result or self._cancelled(index)
                self._events.put_nowait((index, "end", self.results[index]))

    def _cancelled(self, index: int) -> GenerationResult:
        received = self._received[index]
        tokens = received[-1][1] if received else 0
        return GenerationResult(text="".join(text for text, _ in received), input_tokens=self.prompt_tokens,
                                output_tokens=tokens, finish_reason="cancelled",
                                metrics=Metrics.timed(self.started, self._first_at[index], tokens))

    async def events(self):
        """(index, "piece", text) and (index, "end", GenerationResult), until every choice ended."""
        remaining = self.n
        while remaining:
            index, kind, payload = await self._events.get()
            if kind == "error":
                raise _api_error(payload)
            if kind == "piece" and self.first_piece_at is None:
                self.first_piece_at = time.perf_counter()
                self._serving.metrics.ttft.observe(self.first_piece_at - self.started)
            remaining -= kind == "end"
            yield index, kind, payload

    async def collect(self) -> list[Choice]:
        """Every choice in full (the non-streaming response)."""
        choices = []
        async for index, kind, result in self.events():
            if kind == "end":
                choices.append(Choice(index, result.text, result.finish_reason, result.output_tokens))
        return sorted(choices, key=lambda c: c.index)

    def cancel(self) -> None:
        """Stop generating; the choices still running end with "cancelled" (their events still arrive)."""
        for stream in self.streams:
            stream.close()

    def close(self) -> None:
        """Cancel what still runs, give the slots back and count the run. Idempotent; on the loop."""
        if self._closed:
            return
        self._closed = True
        self.cancel()
        for index in range(len(self.streams)):
            if index not in self.results:
                self.results[index] = self._cancelled(index)
        self._serving.finished(self)


class Serving:
    """The engine behind the API: opens Runs within the admission limits."""

    def __init__(self, engine, model_name: str, max_concurrency: int, max_queue: int, metrics: ServerMetrics):
        self.engine = engine
        self.model_name = model_name
        self.max_concurrency = max_concurrency
        self.slots = Slots(max_concurrency, max_queue)
        self.metrics = metrics
        self.default_max_tokens = engine.info.context_length or 4096  # the engine clamps to the room left
        self.draining = False
        self._runs: set[Run] = set()
        metrics.watch(running=lambda: self._stats().running,
                      waiting=lambda: self.slots.waiting + self._stats().waiting,
                      kv_cache=lambda: self._stats().kv_cache_usage or 0.0,
                      restarts=lambda: getattr(engine, "restarts", 0))

    def _stats(self) -> EngineStats:
        try:
            return self.engine.stats()
        except EngineError:  # stopped (an engine process restarting): nothing runs
            return EngineStats(self.engine.mode, 0, 0, None)

    async def open(self, prompt, sampling: Sampling, chat: bool) -> Run:
        """Wait for slots, then start the request's generations. Raises APIError: 429 when the
        queue is full, 400 when the prompt does not fit, 503 while draining."""
        n = sampling.n
        options = [generation_options(sampling, self.default_max_tokens, chat, i) for i in range(n)]
        await self.slots.acquire(n)
        run = Run(self, n)
        self._runs.add(run)
        try:
            if self.draining:
                raise unavailable("The server is shutting down.", code="shutting_down")
            # The engine templates and counts the prompt before it returns: off the event loop.
            await anyio.to_thread.run_sync(self._start_all, run, prompt, options, chat)
        except BaseException:
            run.close()
            raise
        return run

    def _start_all(self, run: Run, prompt, options: list[GenerationOptions], chat: bool) -> None:
        try:
            for choice_options in options:
                run.start(self.engine, prompt, choice_options)
        except PromptError as error:
            raise bad_request(str(error), param="messages" if chat else "prompt", code="invalid_prompt") from None
        except OptionsError as error:
            raise bad_request(str(error)) from None
        except EngineError as error:  # stopped (restarting), or too busy to answer in time: retry later
            raise unavailable(str(error), code="engine_stopped" if isinstance(error, EngineStoppedError) else
                              "engine_busy", retry_after_s=ENGINE_RETRY_AFTER_S) from None

    def finished(self, run: Run) -> None:
        self._runs.discard(run)
        self.slots.release(run.n)
        results = list(run.results.values())
        if results:
            self.metrics.prompt_tokens.inc(results[0].input_tokens)
        for result in results:
            self.metrics.generated_tokens.inc(result.output_tokens)
            self.metrics.finished.labels(result.finish_reason).inc()
            if result.output_tokens > 1:
                self.metrics.tpot.observe(result.metrics.tpot_ms / 1000)

    def drain(self, grace_s: float) -> None:
        """Stop taking requests; cancel those still running after `grace_s` (on the loop)."""
        if self.draining:
            return
        self.draining = True
        asyncio.get_running_loop().call_later(grace_s, self._cancel_all)

    def _cancel_all(self) -> None:
        for run in list(self._runs):
            run.cancel()

    def check_open(self) -> None:
        if self.draining:
            raise unavailable("The server is shutting down; retry on another instance.", code="shutting_down")

