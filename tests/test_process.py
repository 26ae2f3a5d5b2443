"""EngineProcess: an engine in a child process, over a pipe (engine/process.py). The child runs a
fake engine (this module's `_fake`), so these tests need no model: they check the protocol,
one result per request, cancellation, errors crossing the pipe, a dying child, and that the
caller's threads keep running while the child's "pipeline step" holds its GIL."""

import functools
import os
import re
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from ovchat.engine.errors import EngineError, EngineStoppedError, ModelError, PromptError
from ovchat.engine.process import EngineProcess
from ovchat.engine.results import GenerationResult, LoadMetrics, Metrics
from ovchat.engine.events import Accepted, Batch, End, Failed, Text
from ovchat.engine.stream import Feed, Handle

PIECE_DELAY_S = 0.005
SLOW_PREPARE_S = 3.0


class _FakeEngine:
    """Answers a prompt with its own words, one piece per word; "die" ends the process,
    "hold" keeps the GIL for ~1 s per piece (as genai's step() does), "refuse" is a PromptError,
    a prompt that starts with "slow" takes SLOW_PREPARE_S to prepare (a grammar's compile check),
    "fail" stops the engine as a failed runner does (its stream ends with EngineStoppedError)."""
    mode = "batch"

    def __init__(self):
        self.info = SimpleNamespace(path=Path("/models/fake"), context_length=64, architecture="fake")
        self.load_metrics = LoadMetrics(1.0, 2.0, 0.0)
        self.cancelled = 0
        self.running = 0
        self.preparing = 0
        self.prepared = 0
        self.stopped = None
        self.failed = threading.Event()

    def start(self, prompt, options, sink, handle=None):
        """As Engine.start: returns at once, prepares on a thread of its own."""
        handle = handle or Handle()
        threading.Thread(target=self._start, args=(prompt, sink, handle), daemon=True).start()
        return handle

    def _start(self, prompt, sink, handle) -> None:
        if prompt == "refuse":
            return sink.put(Failed(PromptError("The prompt is too long for the model's context; shorten it.")))
        text = prompt if isinstance(prompt, str) else " ".join(m["content"] for m in prompt)  # a chat's messages
        self.preparing += 1
        if text.startswith("slow"):
            time.sleep(SLOW_PREPARE_S)
        self.preparing -= 1
        self.prepared += 1
        if handle.cancelled:  # cancelled while it was prepared: it never runs
            self.cancelled += 1
            return sink.put(End(None))
        words = text.split()
        feed = Feed(sink, handle, Accepted(len(words)))
        feed.accept()
        self._run(feed, words)

    def _run(self, feed: Feed, words: list) -> None:
        self.running += 1
        try:
            for i, word in enumerate(words):
                if feed.cancelled:
                    self.cancelled += 1
                    return feed.end(None)
                if word == "die":
                    os._exit(3)
                if word == "fail":
                    self.stopped = "The engine's scheduler failed (RuntimeError: fake); reload the engine."
                    feed.end(error=EngineStoppedError(self.stopped))
                    return self.failed.set()
                if word == "hold":
                    _hold_gil()
                feed.piece(word + " ", i + 1)
                feed.flush()  # one word per "step"
                time.sleep(PIECE_DELAY_S)
            text = " ".join(words) + " "
            feed.end(GenerationResult(text, len(words), len(words), "stop", Metrics(1.0, 2.0, 500.0, 9.0)))
        finally:
            self.running -= 1

    def stats(self):
        return SimpleNamespace(mode=self.mode, running=self.running, waiting=0, kv_cache_usage=None,
                               cancelled=self.cancelled, preparing=self.preparing, prepared=self.prepared)

    def close(self) -> None:
        pass


def _hold_gil() -> None:
    # Catastrophic backtracking: `re` matches without releasing the GIL, like a C++ call that keeps it.
    re.match(r"(a+)+$", "a" * 24 + "b")


def _fake() -> _FakeEngine:
    return _FakeEngine()


def _failing() -> None:
    raise ModelError("No model at /nowhere. Pass an exported folder (see `ovchat export`) or a .gguf file.")


@pytest.fixture(scope="module")
def engine():
    engine = EngineProcess(_fake, start_timeout_s=60)
    yield engine
    engine.close()


def test_a_stream_carries_its_pieces_and_its_own_result(engine):
    with engine.stream("the capital is Paris") as stream:
        pieces = list(stream)
    assert pieces == ["the ", "capital ", "is ", "Paris "]
    assert stream.result.text == "".join(pieces) and stream.result.finish_reason == "stop"
    assert stream.result.output_tokens == 4 and engine.mode == "batch" and engine.info.path.name == "fake"


def test_concurrent_requests_from_many_threads_each_get_their_own_answer(engine):
    answers = {}

    def ask(i):
        answers[i] = engine.generate(" ".join(f"w{i}-{k}" for k in range(20))).text
    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert answers == {i: "".join(f"w{i}-{k} " for k in range(20)) for i in range(8)}


def test_an_error_before_the_run_reaches_the_caller_as_its_own_type(engine):
    with pytest.raises(PromptError, match="shorten it"):
        engine.stream("refuse")
    assert engine.generate("still answering").text == "still answering "


def test_closing_a_stream_cancels_the_request_in_the_child(engine):
    before = engine.stats().cancelled
    stream = engine.stream(" ".join(["word"] * 2000))
    received = [next(stream) for _ in range(3)]
    stream.close()
    assert stream.result.finish_reason == "cancelled" and stream.result.text == "".join(received)
    deadline = time.monotonic() + 10
    while engine.stats().cancelled == before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert engine.stats().cancelled == before + 1


def test_the_callers_threads_run_while_the_child_holds_its_gil(engine):
    started = time.perf_counter()
    hold = time.perf_counter()
    _hold_gil()
    hold_s = time.perf_counter() - hold  # how long one hold takes here
    gaps, stop = [], threading.Event()

    def tick():
        last = time.perf_counter()
        while not stop.is_set():
            time.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now
    ticker = threading.Thread(target=tick)
    ticker.start()
    try:
        assert engine.generate("hold hold hold").text == "hold hold hold "
    finally:
        stop.set()
        ticker.join()
    elapsed = time.perf_counter() - started
    print(f"\none GIL hold {hold_s:.2f} s; the caller's ticker: longest gap {max(gaps) * 1000:.0f} ms over {elapsed:.1f} s")
    assert max(gaps) < hold_s / 2  # in one process it would wait out each whole hold


def test_a_load_that_fails_raises_its_error_in_the_caller():
    with pytest.raises(ModelError, match="No model at /nowhere"):
        EngineProcess(_failing, start_timeout_s=60)


def test_a_child_that_dies_fails_open_streams_and_later_calls_with_a_clear_error():
    engine = EngineProcess(_fake, start_timeout_s=60, restart=False)
    try:
        stream = engine.stream("one two die three")
        with pytest.raises(EngineStoppedError, match=r"engine process stopped \(exit code 3\); restart the server"):
            list(stream)
        with pytest.raises(EngineStoppedError, match="engine process stopped"):
            engine.stream("anything")
        assert "exit code 3" in engine.stopped and engine.restarts == 0
    finally:
        engine.close()


def wait_until(condition, timeout_s: float = 30) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


def test_a_child_that_dies_is_restarted_and_answers_again():
    engine = EngineProcess(_fake, start_timeout_s=60)
    try:
        first_pid = engine._child.pid
        other = engine.stream(" ".join(["word"] * 5000))  # in flight on the same child
        with pytest.raises(EngineStoppedError, match=r"stopped \(exit code 3\); it is being restarted"):
            list(engine.stream("one two die three"))
        with pytest.raises(EngineStoppedError, match="being restarted"):
            list(other)
        assert engine.stopped and "being restarted" in engine.stopped
        with pytest.raises(EngineStoppedError, match="being restarted"):
            engine.generate("too early")  # at once, not after a timeout
        assert wait_until(lambda: engine.stopped is None, timeout_s=60)
        assert engine.restarts == 1 and engine._child.pid != first_pid
        assert engine.generate("back again").text == "back again "
    finally:
        engine.close()
    assert engine._child._process.poll() is not None


def test_an_engine_whose_runner_fails_ends_its_process_which_is_restarted():
    engine = EngineProcess(_fake, start_timeout_s=60)
    try:
        with pytest.raises(EngineStoppedError, match="scheduler failed"):  # the runner's own reason first
            list(engine.stream("one fail two"))
        assert wait_until(lambda: engine.restarts == 1 and engine.stopped is None, timeout_s=60)
        assert engine.generate("fine now").text == "fine now "
    finally:
        engine.close()


def test_close_ends_open_streams_as_cancelled_and_later_calls_raise_at_once():
    engine = EngineProcess(_fake, start_timeout_s=60)
    stream = engine.stream(" ".join(["word"] * 5000))
    next(stream)
    engine.close()
    for _ in stream:
        pass
    assert stream.result.finish_reason == "cancelled"
    assert engine._child._process.poll() is not None  # nothing left to wait for: the next call raises as is
    with pytest.raises(EngineStoppedError, match="closed"):
        engine.stream("anything")


def test_a_submit_whose_reply_times_out_is_cancelled_in_the_child():
    engine = EngineProcess(_fake, start_timeout_s=60, reply_timeout_s=0.5)
    try:
        with pytest.raises(EngineError, match="did not take the request within 0.5 s"):
            engine.stream("slow " + " ".join(["word"] * 5000))
        engine.reply_timeout_s = 30
        assert wait_until(lambda: engine.stats().prepared == 1, timeout_s=SLOW_PREPARE_S + 10)
        assert wait_until(lambda: engine.stats().cancelled == 1, timeout_s=10)  # it never ran for nobody
        assert engine.stats().running == 0
    finally:
        engine.close()


def test_cancels_stats_and_other_starts_do_not_wait_behind_a_slow_submit():
    engine = EngineProcess(_fake, start_timeout_s=60)
    try:
        running = engine.stream(" ".join(["word"] * 5000))
        next(running)
        slow = threading.Thread(target=engine.generate, args=("slow prompt",), daemon=True)
        slow.start()
        assert wait_until(lambda: engine.stats().preparing == 1)  # the slow submit is being prepared now
        running.close()
        assert wait_until(lambda: engine.stats().cancelled == 1, timeout_s=SLOW_PREPARE_S + 10)
        assert engine.generate("quick answer").text == "quick answer "  # started and answered meanwhile
        assert engine.stats().preparing == 1 and slow.is_alive()  # all of it while the slow one was prepared
        slow.join(SLOW_PREPARE_S + 10)
    finally:
        engine.close()


def test_engine_load_arguments_pass_through_to_the_child():
    captured = {}

    class Probe(EngineProcess):
        def __init__(self, load, start_timeout_s=None, restart=True):
            captured["load"] = load
    Probe.load("model-dir", batching=True, device="CPU")
    load = captured["load"]
    assert isinstance(load, functools.partial) and load.args == ("model-dir",)
    assert load.keywords == {"batching": True, "device": "CPU"} and load.func.__qualname__ == "Engine.load"


def test_a_script_without_a_main_guard_can_start_one_and_a_loader_it_defines_is_refused_clearly(tmp_path):
    import subprocess
    import sys
    script = tmp_path / "app.py"
    script.write_text(
        "import sys\n"
        "sys.path.insert(0, %r)\n"
        "from ovchat.engine.errors import EngineError\n"
        "from ovchat.engine.process import EngineProcess\n"
        "from test_process import _fake\n"
        "engine = EngineProcess(_fake, start_timeout_s=60)\n"  # no `if __name__ == '__main__'`
        "print(engine.generate('no guard needed').text)\n"
        "engine.close()\n"
        "def mine():\n"
        "    return _fake()\n"
        "try:\n"
        "    EngineProcess(mine, start_timeout_s=60)\n"
        "except EngineError as error:\n"
        "    print(error)\n" % str(Path(__file__).parent))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "no guard needed " and "cannot import its loader" in lines[1], done.stdout


def test_finished_cancelled_and_failed_requests_leave_nothing_alive_on_this_side(engine):
    import gc
    import weakref
    finished = engine.stream("one two")
    list(finished)
    cancelled = engine.stream(" ".join(["word"] * 5000))
    next(cancelled)
    cancelled.close()
    with pytest.raises(PromptError):
        engine.stream("refuse")
    assert wait_until(lambda: not engine._sinks and not engine._replies)
    refs = [weakref.ref(obj) for s in (finished, cancelled) for obj in (s, s.sink, s.handle)]
    del finished, cancelled
    gc.collect()
    assert [ref() for ref in refs] == [None] * len(refs)


def test_the_childs_book_of_requests_keeps_only_open_ones_and_its_errors_cross_the_pipe():
    from ovchat.engine.process_child import _Forward
    sent = []
    outbox = Batch(sent.extend)
    handles = {1: Handle(), 2: Handle()}
    done, failed = _Forward(outbox, 1, handles), _Forward(outbox, 2, handles)
    done.put(Accepted(3))
    done.put(Text("a", 1))
    assert sent == [] and set(handles) == {1, 2}  # gathered until the step's flush
    done.flush()
    done.put(End(None))                            # a last event goes at once, and leaves the book
    failed.put(Failed(KeyError("not ours")))       # an error of no ovchat type crosses as an EngineError
    assert handles == {} and [t.request_id for t in sent] == [1, 1, 1, 2]
    assert isinstance(sent[-1].event.error, EngineError) and "KeyError" in str(sent[-1].event.error)
