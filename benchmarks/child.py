"""The one protocol between a measurement and the child process that runs a backend.

    with Child("ovchat.benchmarks.worker", log_path=logs / "x.log") as child:
        data = child.ask({"task": ...}, timeout_s=600)        # one job, one answer
    data = run_once("ovchat.benchmarks.worker", job, timeout_s=600, log_path=...)

The parent starts `python -m MODULE [ARGS]`, writes each job as one JSON line on the child's stdin
and reads one JSON line back per job: {"status": "ok", "data": ...} or {"status": "error",
"reason": "..."}. A child that answers an error, dies, or does not answer within the job's
timeout raises `WorkerError` with where to look (the child is then killed). A child loaded once
answers many jobs (a study's backend); a fresh child per measurement isolates its memory and
gives a cold start. The job travels on stdin, not argv: it may hold large prompts.

The child's side is `serve(handle)`: every line of stdin is a job, `handle(job)` its data. The
JSON lines go to the real stdout; everything else the child prints, the runtimes' C-level output
included, goes to stderr, so nothing corrupts them. Standard library only: a cold-start child
imports this before the backend it times.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

PACKAGE_PARENT = Path(__file__).resolve().parent.parent  # where `python -m ovchat...` finds this package


class WorkerError(Exception):
    """A measurement failed (crash, timeout, error in the child); the message says where to look."""


class Child:
    """One child process answering jobs; always killed by `close()` or leaving the `with` block.

    `log_path`: the child's stderr is appended there (None: it goes to this process's stderr).
    `cwd`: where it runs (default: beside the package, so `-m ovchat...` finds this same code)."""

    def __init__(self, module: str, args: list[str] = (), log_path: Path | None = None, cwd: Path | None = None):
        self.module = module
        self.log_path = log_path
        log = None
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log = open(log_path, "ab")
        try:
            self.process = subprocess.Popen([sys.executable, "-m", module, *args], stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, stderr=log, cwd=cwd or PACKAGE_PARENT)
        finally:
            if log is not None:
                log.close()
        self._buffer = b""

    def ask(self, job: dict, timeout_s: float) -> dict:
        """Send one job; its data, or WorkerError (an error answer, a dead child, no answer in time)."""
        if self.log_path is not None:
            with open(self.log_path, "a") as log:
                log.write(f"\n== {json.dumps(job)[:2000]}\n")
        # A thread writes: a child that never reads would block this one past the timeout.
        threading.Thread(target=self._write, args=(json.dumps(job).encode() + b"\n",), daemon=True).start()
        payload = json.loads(self._read_line(timeout_s))
        if payload["status"] != "ok":
            raise WorkerError(payload["reason"])
        return payload["data"]

    def close(self, timeout_s: float = 60) -> None:
        """End of jobs: the child exits when its stdin closes; killed if it has not within `timeout_s`."""
        try:
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._kill()

    def __enter__(self) -> "Child":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is not None:
            self._kill()
        self.close()

    def _write(self, line: bytes) -> None:
        try:
            self.process.stdin.write(line)
            self.process.stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass  # the child died or was killed: the reader reports it

    def _read_line(self, timeout_s: float) -> bytes:
        deadline = time.monotonic() + timeout_s
        fd = self.process.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                self._kill()
                raise WorkerError(f"{self.module} timed out after {timeout_s:.0f} s{self._where()}")
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    code = self.process.wait()
                    raise WorkerError(f"{self.module} exited with code {code} and no result{self._where()}")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def _kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def _where(self) -> str:
        if self.log_path is None:
            return " (its stderr is above)"
        try:
            tail = self.log_path.read_text(errors="replace")[-1500:]
        except OSError:
            tail = ""
        return f" (log: {self.log_path}){':' + chr(10) + tail if tail else ''}"


def run_once(module: str, job: dict, timeout_s: float, log_path: Path | None = None, args: list[str] = (),
             cwd: Path | None = None) -> dict:
    """A fresh child for one job: its data, or WorkerError."""
    with Child(module, args, log_path, cwd) as child:
        return child.ask(job, timeout_s)


def serve(handle: Callable[[dict], dict]) -> int:
    """The child's side: answer every job line on stdin with one JSON line on the real stdout."""
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # runtimes that print to stdout must not corrupt the JSON lines
    for line in sys.stdin:
        try:
            payload = {"status": "ok", "data": handle(json.loads(line))}
        except Exception as error:  # reported to the parent as this job's error, with its type
            payload = {"status": "error", "reason": f"{type(error).__name__}: {error}"}
        answers.write(json.dumps(payload) + "\n")
        answers.flush()
    return 0
