"""An Engine in a process of its own, supervised: the caller's threads never wait on a pipeline
step, and an engine that dies is restarted.

genai's ContinuousBatchingPipeline.step() keeps the GIL for the whole step (its Python binding
releases nothing), so in one process every other Python thread (an asyncio loop serving HTTP,
one reader per stream) runs only between steps, and they share the few turns they get: with 16
streams, `ovchat serve` delivered each answer in one burst at the end. `EngineProcess` loads the
Engine in a child process and talks to it over a pipe: the child sends each text piece from its
scheduler thread, between steps (no reader thread there to starve), and this process has one
reader thread that feeds each request's own TextStream.

    engine = EngineProcess.load("model-folder", batching=True)   # Engine.load's arguments
    with engine.stream("Tell me a story") as stream:
        for piece in stream: ...

It offers what a server needs of an Engine: `info`, `mode`, `load_metrics`, `start`, `stream`,
`generate`, `stats`, `stopped`, `close` (chat sessions and the tokenizer need the model in this
process), and `restarts`. The messages are typed (wire.py). `start` sends a Submit and returns
at once: the request's events, Accepted or Failed first, come back on the pipe with the others
(the child prepares requests on the engine's preparer threads, preparer.py). `stream` waits
for that first event and raises a refusal (PromptError, OptionsError) as Engine.stream does.
Cancelling (closing a stream, or an acceptance that times out) cancels the request in the child.

Supervision: if the child dies (a crash, a kill, or an engine whose runner failed: the child
then exits, process_child.py), every open stream and waiting call ends with an
EngineStoppedError that says so, `stopped` says it too, and a new child is started, after 1 s,
then twice as long each time one dies within a minute of its start (up to a minute). Once it is
ready, `stopped` is None again and `restarts` counts it. The child ends when this process does.
"""

from __future__ import annotations

import functools
import itertools
import logging
import queue
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, TimeoutError as FutureTimeout
from multiprocessing.connection import Connection
from typing import Callable

from .errors import EngineError, EngineStoppedError
from .events import End, Failed, is_last
from .runner import CLOSED
from .stream import Handle, TextStream
from .wire import AskStats, Cancel, Close, Events, LoadFailed, Stats, Submit

log = logging.getLogger("ovchat.engine")
_REPLY_TIMEOUT_S = 60    # a stream waits this long for the child to take its request; stats for their answer
_BACKOFF_S = (1.0, 60.0)  # first and longest wait before a restart
_STABLE_S = 60.0         # a child that lived this long resets the backoff
_CLOSE_WAIT_S = 60       # a restart under way when closing: its load finishes, then it stops


class EngineProcess:
    """A loaded Engine in a child process; the same start/stream/generate/stats/close as Engine."""

    def __init__(self, load: Callable, start_timeout_s: float | None = None, restart: bool = True,
                 reply_timeout_s: float = _REPLY_TIMEOUT_S):
        """Start a child process that runs `load()` and wait until its Engine is ready; raises
        what the load raised. `load` is pickled by reference: a function of an importable module
        (not of the script being run) or a functools.partial of one. `restart`: start a new child
        when one dies (else the engine stays stopped)."""
        self._load, self._start_timeout_s, self._restart = load, start_timeout_s, restart
        self.reply_timeout_s = reply_timeout_s
        self._ids = itertools.count()
        self._sinks: dict[int, object] = {}       # requests in flight: where their events go
        self._replies: dict[int, Future] = {}     # stats asked for
        self._lock = threading.Lock()       # registering a request against a child's death
        self._stopped: str | None = None    # why the engine does not answer now, if it does not
        self._closing = threading.Event()
        self._backoff_s = _BACKOFF_S[0]
        self.restarts = 0
        self._restarter: threading.Thread | None = None
        self._child = _Child(load, start_timeout_s, self._on_message, self._on_exit)
        self.info, self.load_metrics, self.mode = self._child.info, self._child.load_metrics, self._child.mode

    @classmethod
    def load(cls, *args, **kwargs) -> "EngineProcess":
        """`Engine.load(*args, **kwargs)` in a child process."""
        from .engine import Engine
        return cls(functools.partial(Engine.load, *args, **kwargs))

    def start(self, prompt, options, sink, handle: Handle | None = None) -> Handle:
        """As Engine.start: returns at once; the request's events go to `sink` from the reader
        thread, Accepted or Failed first."""
        request_id = next(self._ids)
        handle = handle or Handle()
        with self._lock:
            stopped = self._stopped
            if stopped is None:
                self._sinks[request_id] = sink
                child = self._child
        if stopped is not None:
            sink.put(Failed(EngineStoppedError(stopped)))
            return handle
        handle.on_cancel = functools.partial(self._cancel, child, request_id)
        child.send(Submit(request_id, prompt, options))
        if handle.cancelled:  # cancelled while it was being sent: the child may have missed it
            self._cancel(child, request_id)
        return handle

    def stream(self, prompt, options=None) -> TextStream:
        """As Engine.stream: raises PromptError or OptionsError before anything runs."""
        stream = TextStream()
        self.start(prompt, options, stream.sink, stream.handle)
        return stream.wait_accepted(self.reply_timeout_s)

    def generate(self, prompt, options=None):
        with self.stream(prompt, options) as stream:
            for _ in stream:
                pass
        return stream.result

    @property
    def pid(self) -> int:
        """The engine process's id (a new one after a restart)."""
        return self._child.pid

    @property
    def stopped(self) -> str | None:
        """Why this engine does not answer now (closed, or its process died and is restarting), else None."""
        return self._stopped

    def stats(self):
        request_id = next(self._ids)
        reply: Future = Future()
        with self._lock:
            if self._stopped is not None:
                raise EngineStoppedError(self._stopped)
            self._replies[request_id] = reply
            child = self._child
        child.send(AskStats(request_id))
        try:
            return reply.result(self.reply_timeout_s).stats
        except FutureTimeout:
            raise EngineError(f"The engine process did not answer within {self.reply_timeout_s:g} s; "
                              "it may be overloaded. Retry, or restart it.") from None
        finally:
            with self._lock:
                self._replies.pop(request_id, None)

    def close(self) -> None:
        """Stop the child (or a restart under way): open streams end as cancelled, later calls
        raise at once; waits up to 30 s for the child to exit."""
        with self._lock:
            self._closing.set()
            self._stopped = CLOSED
        self._child.stop()
        if self._restarter is not None:
            self._restarter.join(_CLOSE_WAIT_S)

    # ---- this side of the pipe -----------------------------------------------------------------

    def _cancel(self, child: "_Child", request_id: int) -> None:
        if request_id in self._sinks:  # not ended yet
            child.send(Cancel(request_id))

    def _on_message(self, message) -> None:
        if isinstance(message, Events):  # a step's events, of every request in it
            self._dispatch(message.tagged)
        elif isinstance(message, Stats) and (reply := self._replies.get(message.request_id)) is not None:
            reply.set_result(message)

    def _dispatch(self, tagged: list) -> None:
        touched = {}
        for item in tagged:
            if is_last(item.event):
                sink = self._sinks.pop(item.request_id, None)
                touched.pop(item.request_id, None)
            else:
                sink = touched[item.request_id] = self._sinks.get(item.request_id)
            if sink is not None:
                sink.put(item.event)
        for sink in touched.values():
            if sink is not None:
                sink.flush()

    def _on_exit(self, child: "_Child") -> None:
        """The child's pipe closed: end what was in flight on it; restart it unless closed."""
        closing = self._closing.is_set()
        restarting = self._restart and not closing
        with self._lock:
            if closing:
                self._stopped = CLOSED
            else:
                self._stopped = (f"The engine process stopped (exit code {child.exit_code()}); "
                                 + ("it is being restarted: retry in a few seconds." if restarting else
                                    "restart the server or reload the engine."))
            sinks, self._sinks = self._sinks, {}
            replies, self._replies = self._replies, {}
        error = EngineStoppedError(self._stopped)
        for sink in sinks.values():
            sink.put(End(None) if closing else Failed(error))  # closed: cancelled, as Engine.close() does
        for reply in replies.values():
            if not reply.done():
                reply.set_exception(error)
        if restarting:
            log.error("ovchat: %s", self._stopped)
            if time.monotonic() - child.started_at >= _STABLE_S:
                self._backoff_s = _BACKOFF_S[0]
            self._restarter = threading.Thread(target=self._restart_after_backoff, name="ovchat-engine-restart",
                                               daemon=True)
            self._restarter.start()

    def _restart_after_backoff(self) -> None:
        while not self._closing.wait(self._backoff_s):
            wait, self._backoff_s = self._backoff_s, min(self._backoff_s * 2, _BACKOFF_S[1])
            try:
                child = _Child(self._load, self._start_timeout_s, self._on_message, self._on_exit)
            except Exception as error:  # a load that fails now (files gone, out of memory): say so, retry
                self._stopped = (f"The engine process could not be restarted ({error}); retrying in "
                                 f"{self._backoff_s:g} s.")
                log.error("ovchat: %s", self._stopped)
                continue
            with self._lock:
                if self._closing.is_set():
                    child.stop()
                    return
                self._child = child
                self._stopped = None
                self.restarts += 1
            log.warning("ovchat: the engine process was restarted (%d so far; waited %g s)", self.restarts, wait)
            return


class _Child:
    """One engine process and its pipe: a writer thread sends, a reader thread calls `on_message`
    for each message and `on_exit(self)` once the pipe closes."""

    def __init__(self, load: Callable, start_timeout_s: float | None, on_message, on_exit):
        # A fresh interpreter (no forked threads or OpenVINO state), started as a plain command
        # rather than multiprocessing's spawn, which re-runs the caller's script in the child.
        ours, theirs = socket.socketpair()
        self.started_at = time.monotonic()
        self._process = subprocess.Popen(
            [sys.executable, "-c", "from ovchat.engine.process_child import main; main()", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),))
        theirs.close()
        self._conn = Connection(ours.detach())
        self._conn.send(sys.path)  # first, so that the loader's module is found when it is unpickled
        self._conn.send(load)
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()  # reentrant: a stream's __del__ may cancel
        if not self._conn.poll(start_timeout_s):
            self._process.kill()
            self._process.wait()
            raise EngineError(f"The engine process did not load the model within {start_timeout_s} s.")
        message = self._receive_first()
        if isinstance(message, LoadFailed):
            self._process.wait(10)
            raise message.error
        self.info, self.load_metrics, self.mode = message.info, message.load_metrics, message.mode
        self._on_message, self._on_exit = on_message, on_exit
        threading.Thread(target=self._read, name="ovchat-engine-reader", daemon=True).start()
        threading.Thread(target=self._write, name="ovchat-engine-writer", daemon=True).start()

    @property
    def pid(self) -> int:
        return self._process.pid

    def send(self, message) -> None:
        self._outbox.put(message)

    def stop(self, wait_s: float = 30) -> None:
        self.send(Close())
        self.send(None)
        try:
            self._process.wait(wait_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def exit_code(self) -> int | None:
        try:
            return self._process.wait(5)
        except subprocess.TimeoutExpired:
            return None

    def _receive_first(self):
        try:
            return self._conn.recv()
        except EOFError:
            raise EngineError(f"The engine process ended while loading (exit code {self.exit_code()}); "
                              "its error is above. Check the model and the device.") from None

    def _write(self) -> None:
        while (message := self._outbox.get()) is not None:
            try:
                self._conn.send(message)
            except (OSError, ValueError):  # the child is gone: the reader reports it
                return

    def _read(self) -> None:
        while True:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                break
            self._on_message(message)
        self.send(None)  # the writer ends too
        self._conn.close()
        self._on_exit(self)
