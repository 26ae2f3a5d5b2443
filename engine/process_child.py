"""The child side of process.py: the engine process's main, its message loop, and the sink that
sends each request's events back over the pipe.

The loop only dispatches: a Submit starts its request on the engine's preparer threads
(Engine.start returns at once), so a cancel, a stats call or another start never waits behind
a prompt being templated or a grammar being compiled. Each request's events join one outbox,
sent as one Events message per batching step (one pipe write and one wake-up of the parent per
step rather than per token: each wake-up can preempt a thread of the plugin mid-step on a
machine whose cores it all uses). An engine whose runner failed answers nothing more: the
process then exits with ENGINE_FAILED, and the parent restarts it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from multiprocessing.connection import Connection

from .errors import EngineError
from .events import Batch, Failed, is_last
from .stream import Handle
from .wire import AskStats, Cancel, Close, Events, LoadFailed, Ready, Stats, Submit, Tagged

ENGINE_FAILED = 70  # this process's exit code when its engine stopped by itself (a runner failure)


class _Forward:
    """One request's sink in the child: its events, tagged, into the outbox (from the thread that
    produced them: the scheduler, between steps); its last event is sent at once."""

    def __init__(self, outbox: Batch, request_id: int, handles: dict):
        self._outbox, self._id, self._handles = outbox, request_id, handles

    def put(self, event) -> None:
        last = is_last(event)
        if last:
            self._handles.pop(self._id, None)
        if isinstance(event, Failed):
            event = Failed(_portable(event.error))
        self._outbox.put(Tagged(self._id, event), now=last)

    def flush(self) -> None:
        self._outbox.flush()


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
        send(LoadFailed(EngineError(f"The engine process cannot import its loader ({error}); pass a function "
                                    "of an importable module, not one defined in the script being run.")))
        return
    try:
        engine = load()
    except BaseException as error:
        send(LoadFailed(_portable(error)))
        return
    send(Ready(engine.info, engine.load_metrics, engine.mode))
    closing = threading.Event()
    threading.Thread(target=_exit_if_engine_fails, args=(engine, closing), name="ovchat-engine-watch",
                     daemon=True).start()
    try:
        _serve(conn, send, engine, Batch(lambda tagged: send(Events(tagged))))
    finally:
        closing.set()
        engine.close()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # daemon threads hold OpenVINO objects: skip the interpreter's teardown


def _exit_if_engine_fails(engine, closing: threading.Event) -> None:
    """An engine whose runner failed answers nothing more: end this process so the parent
    restarts it (its requests have already been ended with the reason)."""
    engine.failed.wait()
    if not closing.is_set():
        sys.stderr.write(f"ovchat engine process: {engine.stopped}\n")
        sys.stderr.flush()
        os._exit(ENGINE_FAILED)


def _serve(conn, send, engine, outbox: Batch) -> None:
    handles: dict[int, Handle] = {}  # requests started and not ended, for Cancel
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if isinstance(message, Close):
            return
        if isinstance(message, Submit):
            handle = handles[message.request_id] = Handle()  # before it starts: its end removes it
            engine.start(message.prompt, message.options, _Forward(outbox, message.request_id, handles), handle)
        elif isinstance(message, Cancel):
            if (handle := handles.get(message.request_id)) is not None:
                handle.cancel()
        elif isinstance(message, AskStats):
            send(Stats(message.request_id, engine.stats()))


def _portable(error: BaseException | None) -> BaseException | None:
    """The error as it can cross the pipe: ovchat's own as they are, anything else as an EngineError."""
    if error is None or isinstance(error, EngineError):
        return error
    return EngineError(f"{type(error).__name__}: {error}")
