"""Requests onto the engine: admission, options, streaming with cancellation, usage.

- Admission (`Slots`): at most `max_concurrency` generations run, at most `max_queue` requests
  wait for a slot; one more is refused at once with a 429 and Retry-After. A request with n > 1
  takes n slots. The engine (batching mode) is loaded with as many sequences as there are
  slots, so it never queues behind the server's back.
- A `Run` is one request's n generations, started with `engine.start`, which returns at once:
  the loop never waits on the engine, and no start waits for another's. Each choice's typed
  events (engine/events.py: Accepted or Failed first, then Text and ToolCallDelta, then End or
  Failed) go from the engine's thread straight to the event loop, gathered per batching step
  (events.Batch): no thread per stream, one wake-up of the loop per step. Closing a Run (the
  client left, the response ended, or the server is draining) cancels its requests: the engine
  stops them at their next token and frees their KV-cache blocks, and the slots go to the next
  request at once.
- Prompts over the context are refused by the engine before anything runs (PromptError): 400.
- Bounds: `max_tokens` above the server's ceiling is clamped to it (the answer then ends with
  finish reason "length", as any answer cut by its limit); a request has `timeout_s` from its
  arrival: past it, waiting for a slot ends in a 503 `timeout`, generating ends the answer with
  finish reason "length" and the text so far, as if it had reached its token limit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import deque
from typing import Callable

from ..engine import EngineStats, GenerationOptions, recommended_options
from ..engine.errors import EngineError, EngineStoppedError, OptionsError, PromptError
from ..engine.events import Accepted, Batch, End, Failed, Text, is_last
from ..engine.results import GenerationResult, Metrics
from . import logprobs
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


def generation_options(sampling: Sampling, defaults: dict, max_tokens: int, chat: bool, index: int = 0,
                       separate_reasoning: bool = True) -> GenerationOptions:
    """The engine's options for choice `index` of a request. A decoding field the request leaves
    out takes the model's recommended value (`defaults`: ModelInfo.generation_defaults, what
    `ovchat generate` uses) by the engine's one rule (engine/decoding.py: no penalty left out
    applies inside response_format or tool calls), so one model decodes one way through the CLI
    and the server. Sampling follows the request's temperature when it gives one (0: greedy);
    without one it follows the model's default, unless the request narrows top_p (< 1) or top_k
    (> 0), which asks for sampling (OpenAI's default temperature is 1). top_p 1 and top_k 0 mean
    off. A seed is offset per choice, so n sampled choices differ."""
    given = {"top_p": sampling.top_p, "top_k": sampling.top_k, "repetition_penalty": sampling.repetition_penalty,
             "presence_penalty": sampling.presence_penalty, "frequency_penalty": sampling.frequency_penalty}
    if sampling.temperature is not None:
        given["do_sample"] = sampling.temperature > 0
        if sampling.temperature > 0:
            given["temperature"] = sampling.temperature
    elif (sampling.top_p or 1.0) < 1 or (sampling.top_k or 0) > 0:
        given["do_sample"] = True
    try:
        options = recommended_options(
            defaults, **given, max_new_tokens=max_tokens, seed=None if sampling.seed is None else sampling.seed + index,
            stop=sampling.stop, apply_chat_template=chat, json_schema=sampling.json_schema,
            json_object=sampling.json_object, ignore_eos=sampling.ignore_eos, tools=sampling.tools,
            tool_choice=sampling.tool_choice, parallel_tool_calls=sampling.parallel_tool_calls,
            logprobs=sampling.logprobs, thinking=sampling.thinking, template_kwargs=sampling.template_kwargs,
            separate_reasoning=separate_reasoning)
    except OptionsError as error:
        raise bad_request(str(error), param=_wire_param(error.param)) from None
    if sampling.logprobs and (why := logprobs.unknown_alternatives(sampling.top_logprobs, options)):
        param = "top_logprobs" if chat else "logprobs"
        raise bad_request(f"'{param}' {why}", param=param)
    return options


def _wire_param(param: str | None) -> str | None:
    """The engine's name for a field as the API names it: tools[1].parameters -> tools[1].function.parameters."""
    if param == "thinking":  # reasoning_effort "none", or chat_template_kwargs.enable_thinking false
        return "reasoning_effort"
    if param and param.startswith("tools[") and param.endswith("].parameters"):
        return param.replace("].parameters", "].function.parameters")
    return param


class _ChoiceSink:
    """One choice's sink (see engine/stream.py): its events, tagged with the choice, into the
    Run's batch; the batch goes to the event loop at each flush (once per step) or end."""

    def __init__(self, batch: Batch, index: int):
        self._batch, self._index = batch, index

    def put(self, event) -> None:
        self._batch.put((self._index, event), now=is_last(event))

    def flush(self) -> None:
        self._batch.flush()


class Run:
    """One request's generations; their events reach the event loop through `events()`."""

    def __init__(self, serving: "Serving", n: int):
        self._serving = serving
        self.n = n
        self.handles: list = []
        self.accepted: list[Accepted | None] = [None] * n
        self.results: dict[int, GenerationResult] = {}  # each choice's, once it has ended
        self.started = time.perf_counter()
        self.first_piece_at: float | None = None
        self._received: list[list[Text]] = [[] for _ in range(n)]  # each choice's text so far
        self._first_at: list[float | None] = [None] * n
        self._loop = asyncio.get_running_loop()
        self._batch = Batch(self._post)
        self._taken = [self._loop.create_future() for _ in range(n)]  # each choice's first event
        self._events: asyncio.Queue = asyncio.Queue()
        self._closed = False
        self.expired = False  # its deadline passed: choices cut short end with "length"
        self._deadline: asyncio.TimerHandle | None = None

    @property
    def prompt_tokens(self) -> int:
        return self.accepted[0].input_tokens if self.accepted[0] else 0

    def start(self, engine, prompt, options) -> None:
        """Start choice number len(self.handles); returns at once (on the loop)."""
        index = len(self.handles)
        self.handles.append(engine.start(prompt, options, _ChoiceSink(self._batch, index)))

    async def taken(self) -> None:
        """Wait until the engine took every choice; raise what refused one (an EngineError)."""
        for future in self._taken:
            if isinstance(first := await future, Failed):
                raise first.error

    def _post(self, items: list) -> None:  # any thread
        try:
            self._loop.call_soon_threadsafe(self._deliver, items)
        except RuntimeError:  # the loop has closed: the server is gone, nobody is listening
            pass

    def _deliver(self, items: list) -> None:  # on the loop
        for index, event in items:
            if not self._taken[index].done():  # its first event: Accepted, or what refused it
                self._taken[index].set_result(event)
            if isinstance(event, Accepted):
                self.accepted[index] = event
                continue
            if isinstance(event, Text):
                self._received[index].append(event)
                self._first_at[index] = self._first_at[index] or time.perf_counter()
            elif isinstance(event, End):
                if index in self.results:  # cancelled: counted when it was closed
                    continue
                result = event.result or self._cancelled(index)
                if self.expired and result.finish_reason == "cancelled":
                    result = dataclasses.replace(result, finish_reason="length")
                self.results[index] = result
            self._events.put_nowait((index, event))

    def _cancelled(self, index: int) -> GenerationResult:
        received = self._received[index]
        tokens = received[-1].output_tokens if received else 0
        return GenerationResult(text="".join(event.text for event in received), input_tokens=self.prompt_tokens,
                                output_tokens=tokens, finish_reason="length" if self.expired else "cancelled",
                                metrics=Metrics.timed(self.started, self._first_at[index], tokens))

    def expire_at(self, when: float) -> None:
        """End the choices still running at loop time `when` (the request's deadline)."""
        self._deadline = self._loop.call_at(when, self._expire)

    def _expire(self) -> None:
        self.expired = True
        self.cancel()

    async def events(self):
        """(index, event) of every choice, typed (Text, ToolCallDelta, End with its final
        GenerationResult), until every choice ended; a Failed one raises its APIError."""
        remaining = self.n
        while remaining:
            index, event = await self._events.get()
            if isinstance(event, Failed):
                raise _api_error(event.error)
            if isinstance(event, Text) and event.text and self.first_piece_at is None:
                self.first_piece_at = time.perf_counter()
                self._serving.metrics.ttft.observe(self.first_piece_at - self.started)
            if isinstance(event, End):
                remaining -= 1
                event = End(self.results[index])
            yield index, event

    async def collect(self) -> list[Choice]:
        """Every choice in full (the non-streaming response)."""
        choices = []
        async for index, event in self.events():
            if isinstance(event, End):
                result = event.result
                choices.append(Choice(index, result.text, result.finish_reason, result.output_tokens, result.tool_calls,
                                      result.tokens, result.reasoning, result.reasoning_tokens))
        return sorted(choices, key=lambda c: c.index)

    def cancel(self) -> None:
        """Stop generating; the choices still running end with "cancelled" (their events still arrive)."""
        for handle in self.handles:
            handle.cancel()

    def close(self) -> None:
        """Cancel what still runs, give the slots back and count the run. Idempotent; on the loop."""
        if self._closed:
            return
        self._closed = True
        if self._deadline is not None:
            self._deadline.cancel()
        self.cancel()
        for index in range(len(self.handles)):
            if index not in self.results:
                self.results[index] = self._cancelled(index)
        self._serving.finished(self)


class Serving:
    """The engine behind the API: opens Runs within the admission limits."""

    def __init__(self, engine, model_name: str, max_concurrency: int, max_queue: int, metrics: ServerMetrics,
                 max_tokens: int | None = None, timeout_s: float | None = None, separate_reasoning: bool = True):
        self.engine = engine
        self.model_name = model_name
        self.max_concurrency = max_concurrency
        self.slots = Slots(max_concurrency, max_queue)
        self.metrics = metrics
        context = engine.info.context_length or 4096  # the engine also clamps to the room left in it
        self.max_tokens = min(max_tokens, context) if max_tokens else context
        self.timeout_s = timeout_s
        self.separate_reasoning = separate_reasoning  # a thinking model's reasoning as reasoning_content (else in content)
        # As `ovchat generate` decodes; an engine whose info recommends nothing decodes as GenerationOptions().
        self.decoding_defaults = dict(getattr(engine.info, "generation_defaults", None) or {})
        self.draining = False
        self._runs: set[Run] = set()
        self.on_finished: Callable[[], None] | None = None  # after each Run closes (server/models.py)
        metrics.watch(running=lambda: self._stats().running,
                      waiting=lambda: self.slots.waiting + self._stats().waiting,
                      kv_cache=lambda: self._stats().kv_cache_usage or 0.0,
                      restarts=lambda: getattr(engine, "restarts", 0))

    @property
    def in_flight(self) -> int:
        """Requests open or waiting for a slot."""
        return len(self._runs) + self.slots.waiting

    @property
    def busy(self) -> bool:
        return bool(self._runs or self.slots.waiting or self.slots.in_use)

    def _stats(self) -> EngineStats:
        try:
            return self.engine.stats()
        except EngineError:  # stopped (an engine process restarting): nothing runs
            return EngineStats(self.engine.mode, 0, 0, None)

    async def open(self, prompt, sampling: Sampling, chat: bool) -> Run:
        """Wait for slots, then start the request's generations. Raises APIError: 429 when the
        queue is full, 400 when the prompt does not fit, 503 while draining."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s if self.timeout_s else None
        n = sampling.n
        max_tokens = min(sampling.max_tokens or self.max_tokens, self.max_tokens)
        options = [generation_options(sampling, self.decoding_defaults, max_tokens, chat, i, self.separate_reasoning)
                   for i in range(n)]
        try:
            await asyncio.wait_for(self.slots.acquire(n), None if deadline is None else deadline - loop.time())
        except asyncio.TimeoutError:
            raise unavailable(f"The request waited {self.timeout_s:g} s for a slot (the server's deadline); "
                              "retry later.", code="timeout", retry_after_s=RETRY_AFTER_S) from None
        run = Run(self, n)
        self._runs.add(run)
        try:
            if self.draining:
                raise unavailable("The server is shutting down.", code="shutting_down")
            for choice_options in options:
                run.start(self.engine, prompt, choice_options)
            if deadline is not None:  # from here on, the deadline ends the answer ("length")
                run.expire_at(deadline)
            await self._taken(run, chat)
        except BaseException:
            run.close()
            raise
        return run

    @staticmethod
    async def _taken(run: Run, chat: bool) -> None:
        """Wait until the engine took the run's requests; its refusals as the API's errors."""
        try:
            await run.taken()
        except PromptError as error:
            raise bad_request(str(error), param=error.param or ("messages" if chat else "prompt"),
                              code="invalid_prompt") from None
        except OptionsError as error:
            raise bad_request(str(error), param=_wire_param(error.param)) from None
        except EngineError as error:  # stopped (restarting): retry later
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
        if self.on_finished is not None:
            self.on_finished()

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

    def close(self) -> None:
        """Close the engine: its requests end (a blocking call)."""
        self.engine.close()

