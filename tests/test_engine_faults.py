"""The engine under faults on a real model (the tiny random Phi-3; both modes): a failing
request fails alone, a broken pipeline stops the engine loudly, close() ends what is open, and
finished, cancelled and failed requests leave nothing alive (genai's native TextStreamer held
a callback that pointed back at each request: a cycle Python's collector cannot see)."""

import gc
import time
import weakref

import pytest

from ovchat import engine
from ovchat.engine import (BatchOptions, EngineError, EngineStoppedError, GenerationOptions, OptionsError,
                           PromptError)
from ovchat.engine.events import Text

LONG = GenerationOptions(max_new_tokens=200, ignore_eos=True)
SHORT = GenerationOptions(max_new_tokens=8, ignore_eos=True)
MODES = {"single": {}, "batch": {"batching": BatchOptions(max_sequences=4)}}


@pytest.fixture(scope="module", params=list(MODES))
def phi3(request, tiny_phi3_dir):
    eng = engine.Engine.load(tiny_phi3_dir, **MODES[request.param])
    yield eng
    eng.close()


def read(stream):
    try:
        for _ in stream:
            pass
    except EngineError as error:
        return error
    return stream.result


def test_a_bad_constraint_or_bad_token_ids_fail_alone_while_others_run(phi3):
    alone = phi3.generate("hello there", SHORT).text
    running = [phi3.stream("hello there", SHORT) for _ in range(3)]
    with pytest.raises(OptionsError, match="cannot be compiled"):
        phi3.stream("hello", GenerationOptions(max_new_tokens=8, regex="(unclosed"))
    with pytest.raises(PromptError, match="not in the model's vocabulary"):  # genai would answer nonsense
        phi3.stream([1, 2, 10**6], SHORT)
    results = [read(stream) for stream in running]
    assert [r.finish_reason for r in results] == ["length"] * 3
    if phi3.mode == "single":  # batched arithmetic may differ in the last bits (issue 21 point 6)
        assert all(r.text == alone for r in results)
    assert phi3.stopped is None and phi3.generate("hello there", SHORT).finish_reason == "length"


def _held_by(stream) -> list:
    return [weakref.ref(stream.sink), weakref.ref(stream.handle), weakref.ref(stream)]


def test_finished_cancelled_and_failed_requests_leave_nothing_alive(phi3):
    refs = []
    finished = phi3.stream("hello there", SHORT)
    assert read(finished).finish_reason == "length"
    cancelled = phi3.stream("hello there", LONG)
    next(cancelled)
    cancelled.close()
    # A failure inside the runner: this request's text pieces cannot be delivered.
    broken = _Broken()
    failed = phi3.start("hello there", LONG, broken)
    phi3.generate("hello", SHORT)
    refs = _held_by(finished) + _held_by(cancelled) + [weakref.ref(broken), weakref.ref(failed)]
    del finished, cancelled, failed, broken
    deadline = time.monotonic() + 10
    while any(ref() is not None for ref in refs) and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.05)
    assert [ref() for ref in refs] == [None] * len(refs)
    assert phi3.stopped is None


class _Broken:
    """An event sink that fails on the first text (as a caller's sink with a bug would)."""

    def put(self, event):
        if isinstance(event, Text):
            raise RuntimeError("the sink is broken")

    def flush(self):
        pass


class _FailingSteps:
    """The pipeline, but every step() raises (a lost device, a broken plugin)."""

    def __init__(self, real):
        self._real = real

    def __getattr__(self, name):
        return getattr(self._real, name)

    def step(self):
        raise RuntimeError("Exception from src/x.cpp:1:\nthe device was lost")


def test_a_batching_step_that_keeps_failing_stops_the_engine_and_says_why(tiny_phi3_dir):
    eng = engine.Engine.load(tiny_phi3_dir, batching=BatchOptions(max_sequences=4))
    try:
        stream = eng.stream("hello there", LONG)
        next(stream)
        eng._runner.pipeline = _FailingSteps(eng._runner.pipeline)
        error = read(stream)
        assert isinstance(error, EngineError) and "the device was lost" in str(error)
        queued = eng.stream("hello there", LONG)  # the second failed step stops the scheduler
        error = read(queued)
        assert isinstance(error, EngineStoppedError) and "scheduler failed" in str(error)
        eng._runner._thread.join(10)
        assert "the device was lost" in eng.stopped
        with pytest.raises(EngineStoppedError, match="scheduler failed"):  # its thread is gone: nothing to wait for
            eng.stream("hello", SHORT)
    finally:
        eng.close()


@pytest.mark.parametrize("mode", list(MODES))
def test_close_ends_open_and_queued_streams_as_cancelled_and_later_calls_raise(tiny_phi3_dir, mode):
    eng = engine.Engine.load(tiny_phi3_dir, **MODES[mode])
    streams = [eng.stream("hello there", LONG) for _ in range(6)]  # beyond 4 sequences / one at a time: queued
    next(streams[0])
    closed_at = time.perf_counter()
    eng.close()
    print(f"\nclose() took {(time.perf_counter() - closed_at) * 1000:.0f} ms")
    results = [read(stream) for stream in streams]
    assert [r.finish_reason for r in results] == ["cancelled"] * 6, results
    assert all(r.output_tokens < 200 for r in results)
    assert not eng._runner._thread.is_alive()  # nothing to wait for: the next call raises as is
    with pytest.raises(EngineStoppedError, match="closed"):
        eng.stream("hello", SHORT)


@pytest.mark.timeout(600)
def test_a_scheduler_that_fails_under_a_server_makes_health_answer_503(tiny_phi3_dir):
    pytest.importorskip("uvicorn")
    from server_harness import request, running_server

    eng = engine.Engine.load(tiny_phi3_dir, batching=BatchOptions(max_sequences=4))
    chat = {"messages": [{"role": "user", "content": "hello there"}], "max_tokens": 20}
    with running_server(lambda: eng) as (url, _):
        assert request(url, "POST", "/v1/chat/completions", chat)[0] == 200
        eng._runner.pipeline = _FailingSteps(eng._runner.pipeline)
        status, body, _ = request(url, "POST", "/v1/chat/completions", chat)  # the first failed step: this request
        assert status == 500 and "the device was lost" in body["error"]["message"]
        status, body, _ = request(url, "POST", "/v1/chat/completions", chat)  # the second: the scheduler
        assert status == 503 and body["error"]["code"] == "engine_stopped"
        assert "scheduler failed" in body["error"]["message"]
        assert request(url, "GET", "/health")[0] == 503
        assert request(url, "POST", "/v1/chat/completions", chat)[0] == 503  # at once, no hang
