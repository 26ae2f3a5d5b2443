"""The one bridge from LLMPipeline's streamer callback to a Python generator.

LLMPipeline.generate blocks and calls a streamer with each decoded text piece (it holds back
incomplete UTF-8, so pieces are whole characters). We run it on a worker thread and hand the
pieces over a queue. When the consumer stops iterating (break, close, Ctrl-C), the next
callback answers STOP, and we wait for the worker so the pipeline is free again.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Generator

import openvino_genai as ov_genai

_DONE = object()


def iterate_pieces(run: Callable[[Callable[[str], Any]], Any], sink: list | None = None) -> Generator[str, None, Any]:
    """Yield the pieces `run(streamer)` streams (appending each to `sink`); return what `run` returns."""
    pieces: queue.Queue = queue.Queue()
    stop = threading.Event()
    outcome: dict = {}

    def streamer(piece: str):
        if piece:
            pieces.put(piece)
        return ov_genai.StreamingStatus.STOP if stop.is_set() else ov_genai.StreamingStatus.RUNNING

    def work():
        try:
            outcome["value"] = run(streamer)
        except BaseException as error:  # handed to the consumer's thread below
            outcome["error"] = error
        finally:
            pieces.put(_DONE)

    worker = threading.Thread(target=work, name="ovchat-generate", daemon=True)
    worker.start()
    try:
        while True:
            try:
                piece = pieces.get(timeout=0.1)  # a timeout keeps Ctrl-C responsive
            except queue.Empty:
                continue
            if piece is _DONE:
                break
            if sink is not None:
                sink.append(piece)
            yield piece
    finally:
        stop.set()
        worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
