"""The child side of process.py: the engine process's main, its message loop, and the sinks that
send each stream's events back over the pipe.

Submits are prepared on a thread of their own (templating, counting, a grammar's compile check
can take seconds), so the message loop stays free for cancels and stats. A cancel that arrives
while its submit is being prepared closes the stream as soon as it exists. An engine whose
runner failed answers nothing more: the process then exits with ENGINE_FAILED, and the parent
restarts it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection

from .errors import EngineError
from .stream import StreamEnd, TextStream

ENGINE_FAILED = 70  # this process's exit code when its engine stopped by itself (a runner failure)


class _Outbox:
    """The child's events, gathered and sent as one message per flush: one pipe write and one
    wake-up of the parent per step rather than per token (each wake-up can preempt a thread of
    the plugin mid-step on a machine whose cores it all uses)."""

    def __init__(self, send):
        self._send = send
        self._pending: list = []
        self._lock = threading.Lock()

    def add(self, event: tuple, now: bool = False) -> None:
        with self._lock:
            self._pending.append(event)
        if now:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            events, self._pending = self._pending, []
        if events:
            self._send(("events", events))


class _Forward:
    """A stream's event sink in the child: into the outbox, from the thread that produced it
    (the scheduler, between steps), sent when the runner flushes; an end goes at once."""

    def __init__(self, outbox: _Outbox, request_id: int, streams: "_Streams"):
        self._outbox, self._id, self._streams = outbox, request_id, streams

    def put(self, event) -> None:
        if isinstance(event, StreamEnd):
            self._streams.ended(self._id)
            self._outbox.add(("end", self._id, event.result, _portable(event.error)), now=True)
        else:
            self._outbox.add(("piece", self._id, *event))

    def flush(self) -> None:
        self._outbox.flush()


class _Streams:
    """The child's requests by id, for cancelling: submitted (being prepared) or open; an ended
    one is never kept. A cancel that arrives while its submit is being prepared is kept until
    the stream exists, and closes it at once."""

    def __init__(self):
        self._open: dict[int, TextStream | None] = {}  # None: being prepared
        self._cancelled: set[int] = set()
        self._ended: set[int] = set()                 # ended before its submit returned
        self._lock = threading.Lock()

    def submitted(self, request_id: int) -> None:
        with self._lock:
            self._open[request_id] = None

    def started(self, request_id: int, stream: TextStream | None) -> None:
        """Its submit returned (`stream`), or was refused (None)."""
        with self._lock:
            self._open.pop(request_id, None)
            cancelled = request_id in self._cancelled
            self._cancelled.discard(request_id)
            if stream is not None and request_id not in self._ended and not cancelled:
                self._open[request_id] = stream
            self._ended.discard(request_id)
        if stream is not None and cancelled:
            stream.close()

    def ended(self, request_id: int) -> None:
        with self._lock:
            if request_id in self._open and self._open[request_id] is None:
                self._ended.add(request_id)  # its submit has not returned yet
            self._open.pop(request_id, None)

    def cancel(self, request_id: int) -> None:
        with self._lock:
            if request_id not in self._open:
                return  # ended already, or unknown
            stream = self._open[request_id]
            if stream is None:
                self._cancelled.add(request_id)
                return
        stream.close()

    def __len__(self) -> int:
        return len(self._open)


def main() -> None:
    """The engine process: argv[1] is its end of the pipe (see EngineProcess)."""
    # Ctrl-C in a terminal and a SIGTERM to the process group reach this process too: the parent
    # decides when the engine stops (it drains first), and closes the pipe if it dies.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    conn = Connection(int(sys.argv[1]))
    sys.path.extend(entry for entry in conn.recv() if entry not in sys.path)
    lock = threading.Lock()

    def send(message) -> None:
        with lock:
            conn.send(message)

    try:
        load = conn.recv()
    except (AttributeError, ImportError) as error:
        send(("load_failed", EngineError(f"The engine process cannot import its loader ({error}); pass a function "
                                         "of an importable module, not one defined in the script being run.")))
        return
    try:
        engine = load()
    except BaseException as error:
        send(("load_failed", _portable(error)))
        return
    send(("ready", engine.info, engine.load_metrics, engine.mode))
    closing = threading.Event()
    threading.Thread(target=_exit_if_engine_stops, args=(engine, closing), name="ovchat-engine-watch",
                     daemon=True).start()
    try:
        _serve(conn, send, engine, _Streams(), _Outbox(send))
    finally:
        closing.set()
        engine.close()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # daemon threads hold OpenVINO objects: skip the interpreter's teardown


def _exit_if_engine_stops(engine, closing: threading.Event) -> None:
    """An engine whose runner failed answers nothing more: end this process so the parent
    restarts it (its streams have already been ended with the reason)."""
    while not closing.wait(0.2):
        if getattr(engine, "stopped", None) and not closing.is_set():
            sys.stderr.write(f"ovchat engine process: {engine.stopped}\n")  # its streams have been ended
            sys.stderr.flush()
            os._exit(ENGINE_FAILED)


def _serve(conn, send, engine, streams: _Streams, outbox: _Outbox) -> None:
    preparer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ovchat-prepare")
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        kind = message[0]
        if kind == "close":
            return
        if kind == "cancel":
            streams.cancel(message[1])
        elif kind == "stats":
            send(("stats", message[1], engine.stats()))
        elif kind == "submit":
            streams.submitted(message[1])
            preparer.submit(_submit, send, engine, streams, outbox, *message[1:])


def _submit(send, engine, streams: _Streams, outbox: _Outbox, request_id: int, prompt, options) -> None:
    try:
        stream = engine.stream(prompt, options, events=_Forward(outbox, request_id, streams))
    except Exception as error:  # PromptError, OptionsError: the caller's to handle
        streams.started(request_id, None)
        send(("refused", request_id, _portable(error)))
        return
    send(("accepted", request_id, stream.input_tokens, stream.dropped_messages, stream.tool_format))
    streams.started(request_id, stream)


def _portable(error: BaseException | None) -> BaseException | None:
    """The error as it can cross the pipe: ovchat's own as they are, anything else as an EngineError."""
    if error is None or isinstance(error, EngineError):
        return error
    return EngineError(f"{type(error).__name__}: {error}")
