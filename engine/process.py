"""An Engine in a process of its own, so the caller's threads never wait on a pipeline step.

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

It offers what a server needs of an Engine: `info`, `mode`, `load_metrics`, `stream`,
`generate`, `stats`, `close` (chat sessions and the tokenizer need the model in this process).
Closing a stream cancels the request in the child. If the child dies, every open stream and
every later call fails with an EngineError that says so; the child ends when this process does.
"""

from __future__ import annotations

import functools
import itertools
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from concurrent.futures import Future, TimeoutError as FutureTimeout
from multiprocessing.connection import Connection
from typing import Callable

from .errors import EngineError
from .stream import Feed, StreamEnd, TextStream

_REPLY_TIMEOUT_S = 60  # a submit waits for the child to template and count the prompt, between steps


class EngineProcess:
    """A loaded Engine in a child process; the same stream/generate/stats/close as Engine."""

    def __init__(self, load: Callable, start_timeout_s: float | None = None):
        """Start a child process that runs `load()` and wait until its Engine is ready; raises
        what the load raised. `load` is pickled by reference: a function of an importable module
        (not of the script being run) or a functools.partial of one."""
        # A fresh interpreter (no forked threads or OpenVINO state), started as a plain command
        # rather than multiprocessing's spawn, which re-runs the caller's script in the child.
        ours, theirs = socket.socketpair()
        self._process = subprocess.Popen(
            [sys.executable, "-c", "from ovchat.engine.process import _child_main; _child_main()", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),))
        theirs.close()
        self._conn = Connection(ours.detach())
        self._conn.send(sys.path)  # first, so that the loader's module is found when it is unpickled
        self._conn.send(load)
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()  # reentrant: a stream's __del__ may cancel
        self._ids = itertools.count()
        self._feeds: dict[int, Feed] = {}
        self._replies: dict[int, Future] = {}
        self._stopped: str | None = None  # why the child is gone, once it is
        if not self._conn.poll(start_timeout_s):
            self._process.kill()
            raise EngineError(f"The engine process did not load the model within {start_timeout_s} s.")
        message = self._receive_first()
        if message[0] == "load_failed":
            self._process.wait(10)
            raise message[1]
        _, self.info, self.load_metrics, self.mode = message
        threading.Thread(target=self._read, name="ovchat-engine-reader", daemon=True).start()
        threading.Thread(target=self._write, name="ovchat-engine-writer", daemon=True).start()

    @classmethod
    def load(cls, *args, **kwargs) -> "EngineProcess":
        """`Engine.load(*args, **kwargs)` in a child process."""
        from .engine import Engine
        return cls(functools.partial(Engine.load, *args, **kwargs))

    def stream(self, prompt, options=None, events=None) -> TextStream:
        """As Engine.stream (`events` too): raises PromptError or OptionsError before anything runs."""
        request_id = next(self._ids)
        stream = TextStream(0, on_cancel=lambda: self._send(("cancel", request_id)), events=events)
        self._feeds[request_id] = Feed(stream)  # before the submit: pieces may arrive before the reply
        try:
            input_tokens, dropped, tool_format = self._ask(("submit", request_id, prompt, options), request_id)
        except BaseException:
            self._feeds.pop(request_id, None)
            stream._on_cancel = None  # it never started: nothing to cancel
            raise
        stream._input_tokens, stream._dropped, stream.tool_format = input_tokens, dropped, tool_format
        return stream

    def generate(self, prompt, options=None):
        with self.stream(prompt, options) as stream:
            for _ in stream:
                pass
        return stream.result

    @property
    def stopped(self) -> str | None:
        """Why this engine no longer answers (closed, or its process died), else None."""
        return self._stopped

    def stats(self):
        request_id = next(self._ids)
        return self._ask(("stats", request_id), request_id)[0]

    def close(self) -> None:
        """Stop the child: requests still running end with an error; waits up to 30 s."""
        if self._stopped is None:
            self._send(("close",))
            self._stopped = "The engine was closed."
            self._outbox.put(None)
        try:
            self._process.wait(30)
        except subprocess.TimeoutExpired:
            self._process.kill()

    # ---- this side of the pipe -----------------------------------------------------------------

    def _send(self, message) -> None:
        if self._stopped is None:
            self._outbox.put(message)

    def _write(self) -> None:
        while (message := self._outbox.get()) is not None:
            try:
                self._conn.send(message)
            except (OSError, ValueError):  # the child is gone: the reader reports it
                return

    def _ask(self, message, request_id: int):
        reply: Future = Future()
        self._replies[request_id] = reply
        try:
            if self._stopped is not None:
                raise EngineError(self._stopped)
            self._send(message)
            answer = reply.result(_REPLY_TIMEOUT_S)
        except FutureTimeout:
            raise EngineError(f"The engine process did not answer within {_REPLY_TIMEOUT_S} s; "
                              "it may be overloaded. Retry, or restart it.") from None
        finally:
            self._replies.pop(request_id, None)
        if answer[0] == "refused":
            raise answer[2]
        return answer[2:]

    def _receive_first(self):
        try:
            return self._conn.recv()
        except EOFError:
            raise EngineError(f"The engine process ended while loading (exit code {_exit_code(self._process)}); "
                              "its error is above. Check the model and the device.") from None

    def _read(self) -> None:
        while True:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                break
            if message[0] == "events":  # a step's pieces and ends, of every request in it
                self._dispatch(message[1])
            elif (reply := self._replies.get(message[1])) is not None:
                reply.set_result(message)
        self._child_gone()

    def _dispatch(self, events: list) -> None:
        touched = {}
        for kind, request_id, *payload in events:
            if kind == "piece" and (feed := self._feeds.get(request_id)) is not None:
                feed.piece(*payload)
                touched[request_id] = feed
            elif kind == "end" and (feed := self._feeds.pop(request_id, None)) is not None:
                touched.pop(request_id, None)
                feed.end(*payload)
        for feed in touched.values():
            feed.flush()

    def _child_gone(self) -> None:
        if self._stopped is None:
            self._stopped = (f"The engine process stopped (exit code {_exit_code(self._process)}); "
                             "restart the server or reload the engine.")
        error = EngineError(self._stopped)
        for feed in list(self._feeds.values()):
            feed.end(error=error)
        self._feeds.clear()
        for reply in list(self._replies.values()):
            if not reply.done():
                reply.set_exception(error)


# ---- the child ---------------------------------------------------------------------------------

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
        self.ended = False

    def put(self, event) -> None:
        if isinstance(event, StreamEnd):
            self._streams.forget(self)
            self._outbox.add(("end", self._id, event.result, _portable(event.error)), now=True)
        else:
            self._outbox.add(("piece", self._id, *event))

    def flush(self) -> None:
        self._outbox.flush()


class _Streams:
    """The child's open streams by request id, for cancelling; an ended one is never kept."""

    def __init__(self):
        self._open: dict[int, TextStream] = {}
        self._lock = threading.Lock()

    def keep(self, request_id: int, stream: TextStream, forward: _Forward) -> None:
        with self._lock:
            if not forward.ended:
                self._open[request_id] = stream

    def forget(self, forward: _Forward) -> None:
        with self._lock:
            forward.ended = True
            self._open.pop(forward._id, None)

    def get(self, request_id: int) -> TextStream | None:
        return self._open.get(request_id)


def _child_main() -> None:
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
    streams = _Streams()
    try:
        _serve(conn, send, engine, streams, _Outbox(send))
    finally:
        engine.close()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # daemon threads hold OpenVINO objects: skip the interpreter's teardown


def _serve(conn, send, engine, streams: _Streams, outbox: _Outbox) -> None:
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        kind = message[0]
        if kind == "close":
            return
        if kind == "cancel":
            stream = streams.get(message[1])
            if stream is not None:
                stream.close()
        elif kind == "stats":
            send(("stats", message[1], engine.stats()))
        elif kind == "submit":
            _, request_id, prompt, options = message
            forward = _Forward(outbox, request_id, streams)
            try:
                stream = engine.stream(prompt, options, events=forward)
            except Exception as error:  # PromptError, OptionsError: the caller's to handle
                send(("refused", request_id, _portable(error)))
                continue
            streams.keep(request_id, stream, forward)
            send(("accepted", request_id, stream._input_tokens, stream._dropped, stream.tool_format))


def _exit_code(process: subprocess.Popen) -> int | None:
    try:
        return process.wait(5)
    except subprocess.TimeoutExpired:
        return None


def _portable(error: BaseException | None) -> BaseException | None:
    """The error as it can cross the pipe: ovchat's own as they are, anything else as an EngineError."""
    if error is None or isinstance(error, EngineError):
        return error
    return EngineError(f"{type(error).__name__}: {error}")
