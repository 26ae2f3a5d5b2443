"""The runners under faults, with fake pipelines (no model, seconds): a request that fails ends
alone, a runner that fails ends every stream with an EngineError that says so and refuses later
calls at once, close() ends open and queued streams as cancelled, and an ended request leaves
nothing alive behind it."""

import gc
import threading
import time
import weakref
from types import SimpleNamespace

import openvino_genai as ov_genai
import pytest

from ovchat.engine.batch import BatchRunner
from ovchat.engine import GenerationOptions
from ovchat.engine.errors import EngineError
from ovchat.engine.events import Accepted
from ovchat.engine.prompt import PreparedPrompt
from ovchat.engine.single import SingleRunner
from ovchat.engine.stream import Feed, TextStream

REFUSED_ID = 666   # add_request refuses a prompt that holds it
BAD_TOKEN = 999    # the fake streamer cannot turn it into text
WAIT_S = 10


class FakeTextStreamer:
    """genai's TextStreamer's shape: token ids in, one text piece per id out through `on_text`."""

    def __init__(self, tokenizer, on_text):
        self._on_text = on_text

    def write(self, ids):
        for token in ids if isinstance(ids, list) else [ids]:
            if token == BAD_TOKEN:
                raise RuntimeError(f"cannot detokenize {token}")
            self._on_text(f"t{token} ")

    def end(self):
        pass


class FakeHandle:
    def __init__(self, answer: list[int]):
        self.answer, self.sent, self.unread, self.cancelled = answer, 0, [], False

    def can_read(self):
        return bool(self.unread)

    def read(self):
        ids, self.unread = self.unread, []
        reason = ov_genai.GenerationFinishReason.LENGTH if self.sent == len(self.answer) else None
        return {0: SimpleNamespace(generated_ids=ids, finish_reason=reason)}

    def get_status(self):
        return ov_genai.GenerationStatus.FINISHED if self.sent == len(self.answer) else ov_genai.GenerationStatus.RUNNING

    def cancel(self):
        self.cancelled = True


class FakeBatchPipeline:
    """ContinuousBatchingPipeline's shape: each step gives every running request its next token
    (its prompt's ids, answered back). `fail_steps` steps raise; `gate`, when clear, holds step()."""

    def __init__(self):
        self.handles: list[FakeHandle] = []
        self.fail_steps = 0
        self.gate = threading.Event()
        self.gate.set()
        self.stepping = threading.Event()

    def get_tokenizer(self):
        return None

    def get_config(self):
        return SimpleNamespace()

    def add_request(self, request_id, tensor, config):
        ids = tensor.data[0].tolist()
        if REFUSED_ID in ids:
            raise RuntimeError(f"Check 'token_id < vocab_size' failed at sampler.cpp:42:\ntoken {REFUSED_ID} is out of range")
        handle = FakeHandle(ids)
        self.handles.append(handle)
        return handle

    def step(self):
        self.stepping.set()
        self.gate.wait(WAIT_S)
        time.sleep(0.001)
        if self.fail_steps:
            self.fail_steps -= 1
            raise RuntimeError("Exception from src/plugin.cpp:7:\nthe plugin ran out of memory")
        for handle in self.handles:
            if not handle.cancelled and handle.sent < len(handle.answer):
                handle.unread.append(handle.answer[handle.sent])
                handle.sent += 1
        self.handles = [h for h in self.handles if not h.cancelled and h.sent < len(h.answer) or h.unread]


CONFIG = SimpleNamespace(logprobs=False)  # the GenerationConfig fields the runners read


def prompt(ids) -> PreparedPrompt:
    return PreparedPrompt(inputs=list(ids), options=GenerationOptions(), ids=tuple(ids))


def submit(runner, prepared: PreparedPrompt, config=CONFIG) -> TextStream:
    """Queue a request on `runner` as Engine._run does, and return its stream."""
    stream = TextStream()
    feed = Feed(stream.sink, stream.handle, Accepted(prepared.input_tokens))
    stream.handle.on_cancel = runner.wake_on_cancel
    if runner.mode == "batch":
        runner.submit(prepared.ids, config, feed)
    else:
        runner.submit(prepared.inputs, prepared.input_tokens, config, feed)
    return stream.wait_accepted()


def batch_runner(pipeline=None) -> BatchRunner:
    return BatchRunner(pipeline or FakeBatchPipeline(), FakeTextStreamer)


def assert_stopped(runner, streams, failure: str) -> None:
    """The runner's thread failed: every stream ended with an EngineError naming `failure`, the
    thread is gone, and a later submit raises at once."""
    for stream in streams:
        error = drain(stream)
        assert isinstance(error, EngineError) and failure in str(error)
        assert stream.result.finish_reason == "error"
    runner._thread.join(WAIT_S)
    assert not runner._thread.is_alive()
    with pytest.raises(EngineError, match=failure.split(" (")[0]):
        submit(runner, prompt([1]))


def text_of(ids) -> str:
    return "".join(f"t{i} " for i in ids)


def drain(stream):
    """(text, finish reason) of a stream read to its end, or the error it raised."""
    try:
        for _ in stream:
            pass
    except EngineError as error:
        return error
    return stream.text, stream.result.finish_reason


@pytest.fixture
def runner():
    runner = batch_runner()
    yield runner
    runner.close()


# ---- batching: a failing request fails alone ----------------------------------------------------

def test_a_request_whose_text_cannot_be_made_fails_alone_and_the_others_finish(runner):
    good = [submit(runner, prompt(range(20 + i, 40 + i))) for i in range(3)]
    bad = submit(runner, prompt([1, 2, BAD_TOKEN, 4]))
    error = drain(bad)
    assert isinstance(error, EngineError) and "cannot detokenize 999" in str(error)
    assert bad.result.finish_reason == "error" and bad.text == "t1 t2 "
    assert [drain(s) for s in good] == [(text_of(range(20 + i, 40 + i)), "length") for i in range(3)]
    assert runner.failure is None and submit(runner, prompt([5])).__next__() == "t5 "


def test_a_prompt_genai_refuses_fails_alone_with_its_reason(runner):
    good = submit(runner, prompt(range(30)))
    refused = submit(runner, prompt([1, REFUSED_ID]))
    error = drain(refused)
    assert isinstance(error, EngineError) and "token 666 is out of range" in str(error)
    assert "sampler.cpp" not in str(error)  # OpenVINO's source location is not the user's business
    assert drain(good) == (text_of(range(30)), "length") and runner.failure is None


def test_one_failed_step_fails_the_requests_in_it_and_the_next_ones_run():
    pipeline = FakeBatchPipeline()
    runner = batch_runner(pipeline)
    try:
        pipeline.gate.clear()
        streams = [submit(runner, prompt(range(50))) for _ in range(2)]
        assert pipeline.stepping.wait(WAIT_S)
        pipeline.fail_steps = 1
        pipeline.gate.set()
        for stream in streams:
            error = drain(stream)
            assert isinstance(error, EngineError) and "ran out of memory" in str(error)
        assert drain(submit(runner, prompt([7, 8]))) == ("t7 t8 ", "length")
        assert runner.failure is None
    finally:
        runner.close()


# ---- batching: a failing scheduler ends everything, loudly ----------------------------------------

def test_a_pipeline_that_keeps_failing_stops_the_runner_and_every_stream_hears_why():
    pipeline = FakeBatchPipeline()
    runner = batch_runner(pipeline)
    try:
        pipeline.gate.clear()
        running = submit(runner, prompt(range(50)))
        assert pipeline.stepping.wait(WAIT_S)
        queued = submit(runner, prompt(range(50)))  # waits: the scheduler is inside step()
        pipeline.fail_steps = 1_000
        pipeline.gate.set()
        first, second = drain(running), drain(queued)
        assert isinstance(first, EngineError) and "ran out of memory" in str(first)  # the first failed step
        assert isinstance(second, EngineError) and "scheduler failed" in str(second) and "Reload" in str(second)
        runner._thread.join(WAIT_S)
        assert "ran out of memory" in runner.failure
        with pytest.raises(EngineError, match="scheduler failed"):  # its thread is gone: nothing to wait for
            submit(runner, prompt([1]))
    finally:
        runner.close()


@pytest.mark.parametrize("where", ["_admit", "_step"])
def test_a_bug_anywhere_in_the_scheduler_ends_open_and_queued_streams_with_what_failed(where):
    pipeline = FakeBatchPipeline()
    runner = batch_runner(pipeline)
    try:
        pipeline.gate.clear()
        running = submit(runner, prompt(range(50)))
        assert pipeline.stepping.wait(WAIT_S)
        queued = submit(runner, prompt(range(50)))

        def bug():
            raise KeyError("a bug in the scheduler")
        setattr(runner, where, bug)
        pipeline.gate.set()
        assert_stopped(runner, (running, queued), "scheduler failed (KeyError")
        assert "a bug in the scheduler" in runner.failure
    finally:
        runner.close()


def test_close_ends_open_and_queued_streams_as_cancelled_and_later_calls_raise_at_once():
    pipeline = FakeBatchPipeline()
    runner = batch_runner(pipeline)
    pipeline.gate.clear()
    running = submit(runner, prompt(range(50)))
    assert pipeline.stepping.wait(WAIT_S)
    queued = submit(runner, prompt(range(50)))
    closer = threading.Thread(target=runner.close)
    closer.start()  # waits for the step in hand
    pipeline.gate.set()
    closer.join(WAIT_S)
    assert not closer.is_alive() and not runner._thread.is_alive()
    assert drain(running)[1] == "cancelled" and drain(queued) == ("", "cancelled")
    assert all(handle.cancelled for handle in pipeline.handles)  # their KV blocks go back
    with pytest.raises(EngineError, match="closed"):
        submit(runner, prompt([1]))
    assert runner.failure is None


# ---- single-stream runner ------------------------------------------------------------------------

class FakeLLMPipeline:
    """LLMPipeline's shape: generate() writes the prompt's ids back one at a time; `broken_perf`
    makes the results' perf metrics unreadable (a fault outside generate())."""

    def __init__(self, broken_perf: bool = False):
        self.broken_perf = broken_perf
        self.started = threading.Event()
        self.gate = threading.Event()
        self.gate.set()

    def get_tokenizer(self):
        return None

    def get_generation_config(self):
        return SimpleNamespace()

    def generate(self, inputs, config, streamer):
        self.started.set()
        for token in inputs:
            self.gate.wait(WAIT_S)
            if streamer.write(token) == ov_genai.StreamingStatus.CANCEL:
                break
            time.sleep(0.001)
        streamer.end()
        perf = None if self.broken_perf else SimpleNamespace(get_ttft=_mean, get_tpot=_mean, get_throughput=_mean,
                                                             get_generate_duration=_mean)
        return SimpleNamespace(finish_reasons=[ov_genai.GenerationFinishReason.LENGTH], perf_metrics=perf)


def _mean():
    return SimpleNamespace(mean=1.0)


def single_runner(pipeline) -> SingleRunner:
    return SingleRunner(pipeline, FakeTextStreamer)


def test_the_single_runner_streams_and_a_fault_in_the_streamer_fails_that_request_alone():
    runner = single_runner(FakeLLMPipeline())
    try:
        bad = submit(runner, prompt([1, BAD_TOKEN, 3]))
        good = submit(runner, prompt([4, 5, 6]))
        error = drain(bad)
        assert isinstance(error, EngineError) and "cannot detokenize 999" in str(error)
        assert drain(good) == ("t4 t5 t6 ", "length") and runner.failure is None
    finally:
        runner.close()


def test_a_fault_in_the_single_worker_ends_the_request_and_the_queue_and_refuses_later_calls():
    pipeline = FakeLLMPipeline(broken_perf=True)
    pipeline.gate.clear()
    runner = single_runner(pipeline)
    try:
        running = submit(runner, prompt([1, 2]))
        assert pipeline.started.wait(WAIT_S)
        queued = submit(runner, prompt([3]))
        pipeline.gate.set()
        assert_stopped(runner, (running, queued), "worker failed (AttributeError")
        assert "worker failed" in runner.failure
    finally:
        runner.close()


def test_closing_the_single_runner_cancels_the_generation_in_hand_and_the_queue():
    pipeline = FakeLLMPipeline()
    pipeline.gate.clear()
    runner = single_runner(pipeline)
    running = submit(runner, prompt(range(100)))
    assert pipeline.started.wait(WAIT_S)
    queued = submit(runner, prompt([3]))
    closer = threading.Thread(target=runner.close)
    closer.start()
    pipeline.gate.set()
    closer.join(WAIT_S)
    assert not closer.is_alive() and not runner._thread.is_alive()
    assert drain(running)[1] == "cancelled" and len(running.text.split()) < 100
    assert drain(queued) == ("", "cancelled")
    with pytest.raises(EngineError, match="closed"):
        submit(runner, prompt([1]))


# ---- nothing of an ended request stays alive -----------------------------------------------------

def _held_by(stream) -> list:
    """Weak references to what a request holds on the runner's side: its stream's sink and
    handle (the Feed's), and the stream."""
    return [weakref.ref(stream.sink), weakref.ref(stream.handle), weakref.ref(stream)]


@pytest.mark.parametrize("make", [batch_runner, lambda: single_runner(FakeLLMPipeline())], ids=["batch", "single"])
def test_finished_cancelled_and_failed_requests_leave_nothing_alive(make):
    runner = make()
    try:
        refs = []
        finished = submit(runner, prompt(range(5)))
        assert drain(finished)[1] == "length"
        cancelled = submit(runner, prompt([7] * 10_000))
        next(cancelled)
        cancelled.close()
        failed = submit(runner, prompt([1, BAD_TOKEN]))
        error = drain(failed)
        assert isinstance(error, EngineError)
        del error  # (its traceback holds the caller's frames, the stream's among them)
        assert drain(submit(runner, prompt([9])))[1] == "length"  # the runner has moved past them all
        for stream in (finished, cancelled, failed):
            refs += _held_by(stream)
        if isinstance(runner, BatchRunner):
            assert not runner._active
        del finished, cancelled, failed, stream
        gc.collect()
        assert [ref() for ref in refs] == [None] * len(refs)
    finally:
        runner.close()
