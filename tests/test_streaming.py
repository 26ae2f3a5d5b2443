"""The callback-to-generator bridge, driven by a fake pipeline run."""

import threading

import openvino_genai as ov_genai
import pytest

from engine.streaming import iterate_pieces


def fake_run(pieces, seen_statuses):
    def run(streamer):
        for piece in pieces:
            status = streamer(piece)
            seen_statuses.append(status)
            if status != ov_genai.StreamingStatus.RUNNING:
                return "stopped"
        return "finished"
    return run


def test_pieces_arrive_in_order_and_the_run_value_is_returned():
    statuses = []
    stream = iterate_pieces(fake_run(["a", "é", "😀"], statuses))
    got = []
    with pytest.raises(StopIteration) as done:
        while True:
            got.append(next(stream))
    assert got == ["a", "é", "😀"]
    assert done.value.value == "finished"


def test_closing_the_generator_stops_the_run_and_waits_for_it():
    statuses = []
    stream = iterate_pieces(fake_run([str(i) for i in range(10_000)], statuses))
    assert next(stream) == "0"
    stream.close()
    assert statuses[-1] == ov_genai.StreamingStatus.STOP
    assert len(statuses) < 10_000
    assert not [t for t in threading.enumerate() if t.name == "ovchat-generate"]


def test_an_error_in_the_run_reaches_the_consumer():
    def run(streamer):
        streamer("x")
        raise RuntimeError("plugin failed")
    with pytest.raises(RuntimeError, match="plugin failed"):
        list(iterate_pieces(run))
