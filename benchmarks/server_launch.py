"""Start a server as a subprocess on 127.0.0.1, wait until it is healthy, and always stop it.

    with launched(ServerSpec("llama-server", [binary, "-m", gguf, "--port", "{port}"]), log_path) as url:
        ...   # url = "http://127.0.0.1:<ephemeral port>"

The command's "{port}" placeholders get a free ephemeral port. The server is healthy when
`GET <health_path>` answers 200 (a server that answers 503 while loading is waited for). If
the process exits first, or is not healthy within `ready_timeout_s`, `ServerStartError` says so
with the tail of its log. On leaving the block, whatever happened inside, the whole process group
gets SIGTERM, then SIGKILL after `stop_timeout_s`: a benchmark that fails leaves no server
behind. The server's stdout and stderr go to `log_path`.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


class ServerStartError(RuntimeError):
    """The server exited or never became healthy; the message has the tail of its log."""


@dataclass(frozen=True)
class ServerSpec:
    name: str
    command: list[str]                   # "{port}" is replaced by the chosen port
    health_path: str = "/health"
    ready_timeout_s: float = 300
    stop_timeout_s: float = 20
    env: dict = field(default_factory=dict)  # added to os.environ


@dataclass(frozen=True)
class Stopped:
    """How the server went away: its exit code, and whether SIGKILL was needed."""
    returncode: int | None
    killed: bool
    stop_s: float


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_status(url: str, path: str, timeout_s: float = 2) -> int | None:
    """The status of GET url+path, or None when nothing answers."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout_s)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def log_tail(path: Path, chars: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


@contextlib.contextmanager
def launched(spec: ServerSpec, log_path: Path, on_stop=None):
    """Yield the server's base URL once healthy; stop it on exit (see the module docstring).
    `on_stop(Stopped)` is called after it is gone, also when it never became healthy."""
    port = free_port()
    command = [part.replace("{port}", str(port)) for part in spec.command]
    url = f"http://127.0.0.1:{port}"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"\n== {' '.join(command)}\n".encode())
        log.flush()
        # its own session: SIGTERM/SIGKILL reach every process it starts, and nothing else
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env={**os.environ, **spec.env}, start_new_session=True)
    try:
        wait_healthy(process, url, spec, log_path)
        yield url
    finally:
        stopped = stop(process, spec.stop_timeout_s)
        if on_stop:
            on_stop(stopped)


def wait_healthy(process: subprocess.Popen, url: str, spec: ServerSpec, log_path: Path) -> float:
    """Seconds until GET health_path answered 200."""
    start = time.monotonic()
    while time.monotonic() - start < spec.ready_timeout_s:
        if process.poll() is not None:
            raise ServerStartError(f"{spec.name} exited with code {process.returncode} before it was healthy "
                                   f"(log {log_path}):\n{log_tail(log_path)}")
        if http_status(url, spec.health_path) == 200:
            return time.monotonic() - start
        time.sleep(0.25)
    raise ServerStartError(f"{spec.name} was not healthy ({spec.health_path} answered no 200) within "
                           f"{spec.ready_timeout_s:.0f} s (log {log_path}):\n{log_tail(log_path)}")


def stop(process: subprocess.Popen, timeout_s: float) -> Stopped:
    """SIGTERM to the server's process group, SIGKILL after `timeout_s`."""
    start = time.monotonic()
    if process.poll() is not None:
        return Stopped(process.returncode, False, 0.0)
    _signal_group(process, signal.SIGTERM)
    try:
        process.wait(timeout_s)
        return Stopped(process.returncode, False, time.monotonic() - start)
    except subprocess.TimeoutExpired:
        _signal_group(process, signal.SIGKILL)
        process.wait(10)
        return Stopped(process.returncode, True, time.monotonic() - start)


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)  # the group this Popen created (start_new_session): ours alone
    except ProcessLookupError:
        pass
