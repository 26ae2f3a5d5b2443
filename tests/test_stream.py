"""TextStream: one request's pieces and its own result, fed by a fake runner thread (no model)."""

import gc
import queue
import threading
import time

import pytest

from ovchat.engine import EngineError, GenerationResult, Metrics
from ovchat.engine.stream import Feed, TextStream


def result_of(text, tokens, reason="stop"):
    return GenerationResult(text=text, input_tokens=3, output_tokens=tokens, finish_reason=reason,
                            metrics=Metrics(ttft_ms=1.0, tpot_ms=1.0, tokens_per_s=1000.0, generate_ms=5.0))


def fake_runner(stream, pieces, delay=0.0, stopped=None):
    """Feeds `pieces` one per token on its own thread, as a runner does; stops when cancelled."""
    feed = Feed(stream)

    def run():
        for i, piece in enumerate(pieces, 1):
            if feed.cancelled:
                if stopped is not None:
                    stopped.set()
                return feed.end(None)
            feed.piece(piece, i)
            time.sleep(delay)
        feed.end(result_of("".join(pieces), len(pieces)))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_pieces_arrive_in_order_and_the_result_is_the_runners():
    stream = TextStream(input_tokens=3)
    fake_runner(stream, ["a", "é", "😀"])
    assert list(stream) == ["a", "é", "😀"]
    assert stream.result.text == "aé😀" and stream.result.finish_reason == "stop"
    assert stream.text == "aé😀"


def test_closing_after_three_pieces_is_cancelled_with_what_was_received():
    stream = TextStream(input_tokens=3)
    stopped = threading.Event()
    fake_runner(stream, [f"{i} " for i in range(10_000)], delay=0.001, stopped=stopped)
    received = [next(stream) for _ in range(3)]
    stream.close()
    assert stream.result.finish_reason == "cancelled"
    assert stream.result.text == "".join(received) and stream.result.output_tokens == 3
    assert stopped.wait(5), "the runner did not see the cancellation"
    assert list(stream) == []  # a closed stream yields nothing more


def test_a_with_block_cancels_on_an_exception_and_lets_it_through():
    stream = TextStream(input_tokens=1)
    fake_runner(stream, ["x"] * 1000, delay=0.001)
    with pytest.raises(KeyboardInterrupt):
        with stream:
            next(stream)
            raise KeyboardInterrupt
    assert stream.result.finish_reason == "cancelled"


def test_an_abandoned_stream_tells_its_runner_to_stop():
    stopped = threading.Event()
    stream = TextStream(input_tokens=1)
    fake_runner(stream, ["x"] * 100_000, delay=0.001, stopped=stopped)
    next(stream)
    del stream
    gc.collect()
    assert stopped.wait(5)


def test_closing_a_finished_stream_keeps_its_result():
    stream = TextStream(input_tokens=1)
    fake_runner(stream, ["a", "b"])
    list(stream)
    stream.close()
    assert stream.result.finish_reason == "stop"


def test_an_error_in_the_runner_reaches_the_caller():
    stream = TextStream(input_tokens=1)
    feed = Feed(stream)
    feed.piece("x", 1)
    feed.end(error=EngineError("plugin failed; reload the model"))
    assert next(stream) == "x"
    with pytest.raises(EngineError, match="plugin failed"):
        next(stream)
    assert stream.result.finish_reason == "error" and stream.result.text == "x"


def test_done_callbacks_see_the_result_once():
    seen = []
    stream = TextStream(input_tokens=1)
    stream.add_done_callback(seen.append)
    fake_runner(stream, ["a"])
    list(stream)
    stream.close()
    assert [r.text for r in seen] == ["a"]


def test_a_feed_ends_once():
    stream = TextStream(input_tokens=1)
    feed = Feed(stream)
    feed.end(result_of("", 0))
    feed.end(error=RuntimeError("late"))  # ignored
    assert list(stream) == [] and stream.result.output_tokens == 0


class WatchedQueue(queue.Queue):
    """A stream's event queue that says when its reader waits on it (it is empty and the reader
    asks for the next event): a test then orders threads by that, not by a sleep."""

    def __init__(self):
        super().__init__()
        self.reader_waits = threading.Event()

    def get(self, block=True, timeout=None):
        if self.empty():
            self.reader_waits.set()
        return super().get(block, timeout)


def test_closing_from_another_thread_while_one_waits_keeps_the_cancelled_result():
    # A server reads a stream on one thread and closes it from another when its client leaves.
    events = WatchedQueue()
    stream = TextStream(input_tokens=3, events=events)
    feed = Feed(stream)
    feed.piece("a", 1)
    pieces, seen = [], []
    stream.add_done_callback(seen.append)
    reader = threading.Thread(target=lambda: pieces.extend(stream), daemon=True)
    reader.start()
    assert events.reader_waits.wait(5), "the reader never asked for the next piece"
    stream.close()    # while the reader waits for the next piece
    feed.end(None)    # the runner's end for a cancelled request
    reader.join(timeout=5)
    assert not reader.is_alive() and pieces == ["a"]
    assert stream.result.finish_reason == "cancelled" and stream.result.text == "a"
    assert [r.finish_reason for r in seen] == ["cancelled"]


def test_the_public_names_are_the_lazy_exports():
    from ovchat import engine
    assert sorted(engine.__all__) == sorted([*engine._EXPORTS, "load"])
    assert all(getattr(engine, name) is not None for name in engine.__all__)
