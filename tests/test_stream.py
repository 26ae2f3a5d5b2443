"""TextStream and Feed: one request's typed events and its own result, fed by a fake runner
thread (no model); tool calls read once, as the answer streams."""

import gc
import queue
import threading
import time

import pytest

from ovchat.engine import EngineError, GenerationResult, Metrics, PromptError
from ovchat.engine.events import Accepted, End, Failed, Text, ToolCallDelta
from ovchat.engine.stream import Feed, TextStream


def result_of(text, tokens, reason="stop"):
    return GenerationResult(text=text, input_tokens=3, output_tokens=tokens, finish_reason=reason,
                            metrics=Metrics(ttft_ms=1.0, tpot_ms=1.0, tokens_per_s=1000.0, generate_ms=5.0))


def open_stream(input_tokens=3, tool_format=None, offered=(), sink=None):
    """A stream the engine has accepted, and the Feed a runner writes it through."""
    stream = TextStream()
    if sink is not None:
        stream.sink = sink
    feed = Feed(stream.sink, stream.handle, Accepted(input_tokens, tool_format=tool_format), offered)
    feed.accept()
    return stream.wait_accepted(), feed


def fake_runner(opened, pieces, delay=0.0, stopped=None):
    """Feeds `pieces` one per token on its own thread, as a runner does; stops when cancelled."""
    stream, feed = opened

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
    stream, feed = opened = open_stream()
    fake_runner(opened, ["a", "é", "😀"])
    assert list(stream) == ["a", "é", "😀"]
    assert stream.result.text == "aé😀" and stream.result.finish_reason == "stop"
    assert stream.text == "aé😀"


def test_closing_after_three_pieces_is_cancelled_with_what_was_received():
    stream, _ = opened = open_stream()
    stopped = threading.Event()
    fake_runner(opened, [f"{i} " for i in range(10_000)], delay=0.001, stopped=stopped)
    received = [next(stream) for _ in range(3)]
    stream.close()
    assert stream.result.finish_reason == "cancelled"
    assert stream.result.text == "".join(received) and stream.result.output_tokens == 3
    assert stopped.wait(5), "the runner did not see the cancellation"
    assert list(stream) == []  # a closed stream yields nothing more


def test_a_with_block_cancels_on_an_exception_and_lets_it_through():
    stream, _ = opened = open_stream(1)
    fake_runner(opened, ["x"] * 1000, delay=0.001)
    with pytest.raises(KeyboardInterrupt):
        with stream:
            next(stream)
            raise KeyboardInterrupt
    assert stream.result.finish_reason == "cancelled"


def test_an_abandoned_stream_tells_its_runner_to_stop():
    stopped = threading.Event()
    opened = open_stream(1)
    fake_runner(opened, ["x"] * 100_000, delay=0.001, stopped=stopped)
    stream = opened[0]
    next(stream)
    del stream, opened
    gc.collect()
    assert stopped.wait(5)


def test_closing_a_finished_stream_keeps_its_result():
    stream, _ = opened = open_stream(1)
    fake_runner(opened, ["a", "b"])
    list(stream)
    stream.close()
    assert stream.result.finish_reason == "stop"


def test_an_error_in_the_runner_reaches_the_caller():
    stream, feed = open_stream(1)
    feed.piece("x", 1)
    feed.end(error=EngineError("plugin failed; reload the model"))
    assert next(stream) == "x"
    with pytest.raises(EngineError, match="plugin failed"):
        next(stream)
    assert stream.result.finish_reason == "error" and stream.result.text == "x"


def test_done_callbacks_see_the_result_once():
    seen = []
    stream, _ = opened = open_stream(1)
    stream.add_done_callback(seen.append)
    fake_runner(opened, ["a"])
    list(stream)
    stream.close()
    assert [r.text for r in seen] == ["a"]


def test_a_feed_ends_once():
    stream, feed = open_stream(1)
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

    def flush(self):
        pass


def test_closing_from_another_thread_while_one_waits_keeps_the_cancelled_result():
    # A server reads a stream on one thread and closes it from another when its client leaves.
    events = WatchedQueue()
    stream, feed = open_stream(sink=events)
    events.reader_waits.clear()
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


def test_runners_feed_streams_through_their_public_methods_only():
    # EngineProcess, the runners and the server speak to a TextStream through its sink and
    # handle: no module but stream.py reaches into its private fields.
    import ast
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    for path in [*(repo / "engine").rglob("*.py"), *(repo / "server").rglob("*.py")]:
        if path.name == "stream.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "stream":
                assert not node.attr.startswith("_"), f"{path.name}:{node.lineno} uses stream.{node.attr}"


class Recorder(list):
    """A sink that keeps every event, as the server's and the engine process's do."""

    def put(self, event):
        self.append(event)

    def flush(self):
        pass


def test_a_feed_speaks_typed_events_accepted_first_and_one_end_last():
    sink, stream = Recorder(), TextStream()
    feed = Feed(sink, stream.handle, Accepted(5, dropped_messages=1))
    feed.accept()
    feed.piece("Hel", 1)
    feed.piece("", 2)  # a token whose text is held back: nothing to say yet
    feed.piece("lo", 3)
    feed.end(result_of("Hello", 3))
    feed.end(error=EngineError("late"))  # ignored: a request ends once
    assert sink == [Accepted(5, 1), Text("Hel", 1), Text("lo", 3), End(result_of("Hello", 3))]


def test_a_refused_request_raises_from_wait_accepted_with_its_own_error():
    stream = TextStream()
    stream.sink.put(Failed(PromptError("The prompt is empty; pass some text.")))
    with pytest.raises(PromptError, match="empty"):
        stream.wait_accepted()
    assert stream.result.finish_reason == "error"


def test_an_acceptance_that_never_comes_times_out_and_cancels_the_request():
    stream = TextStream()
    with pytest.raises(EngineError, match="did not take the request within 0.2 s"):
        stream.wait_accepted(timeout_s=0.2)
    assert stream.handle.cancelled  # it must not run for nobody if it starts later


def test_tool_calls_are_read_once_as_they_stream_and_the_result_carries_the_same_calls():
    sink, stream = Recorder(), TextStream()
    feed = Feed(sink, stream.handle, Accepted(5, tool_format="hermes"), offered=("get_weather",))
    feed.accept()
    answer = ['Let me check.', ' <tool_call>', '{"name": "get_weather", ', '"arguments": {"city": ', '"Paris"}}',
              '</tool_call>']
    for i, piece in enumerate(answer, 1):
        feed.piece(piece, i)
    feed.end(result_of("".join(answer), len(answer)))
    texts = [e.text for e in sink if isinstance(e, Text)]
    deltas = [e for e in sink if isinstance(e, ToolCallDelta)]
    end = sink[-1]
    assert "".join(texts) == "Let me check." == end.result.text  # the call's markup is not text
    assert deltas[0].name == "get_weather" and deltas[0].id
    assert "".join(d.arguments for d in deltas) == '{"city": "Paris"}'
    assert [(c.id, c.name, c.arguments) for c in end.result.tool_calls] == [(deltas[0].id, "get_weather",
                                                                            {"city": "Paris"})]
    assert end.result.finish_reason == "tool_calls"


def test_a_python_caller_iterates_the_answer_text_and_sees_the_calls_in_the_result():
    stream, feed = open_stream(tool_format="hermes", offered=("get_weather",))
    for i, piece in enumerate(['<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}', '</tool_call>'], 1):
        feed.piece(piece, i)
    feed.end(result_of("", 2))
    assert list(stream) == []
    assert stream.result.tool_calls[0].name == "get_weather" and stream.tool_calls[0].name == "get_weather"
