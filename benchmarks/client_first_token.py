"""Issue 11 point 5: process start to first token of `ovchat generate --server URL "q"`.

`measure(files, profile, logs)` starts `ovchat serve` on the model (benchmarks/server_launch.py),
waits until it is healthy and has answered one request, then spawns fresh client processes
`ovchat generate --server URL -n 16 PROMPT` and times each from the spawn to the first byte it
writes to stdout (the first token a user sees; PYTHONUNBUFFERED so a pipe shows it as a terminal
would) and to its exit. "cold": the OS page cache is dropped just before the client starts (when
allowed and the profile asks), so the interpreter and ovchat's modules come from disk; "warm":
a second client right after. Both talk to the same resident server: a client loads no model.

The figures sit beside benchmarks/coldstart.py's fresh `engine` (what `ovchat generate` without
a server does) and `llama.cpp` processes in the coldstart scenario, as backend `ovchat-client`.
The client command is the serve command with `serve` replaced by `generate` (`--ovchat-serve-cmd`
measures another build's client and server together).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from .coldstart import drop_page_cache
from .server_launch import ServerSpec, ServerStartError, launched
from .server_load import make_prompt, run_load
from .server_scenario import served_model, server_spec


def client_command(profile, url: str, prompt: str, new_tokens: int) -> list[str]:
    serve = shlex.split(profile.ovchat_serve_cmd) if profile.ovchat_serve_cmd else [sys.executable, "-m", "ovchat", "serve"]
    base = serve[:-1] + ["generate"] if serve[-1] == "serve" else serve + ["generate"]
    return [*base, "--server", url, "-n", str(new_tokens), prompt]


def time_client(command: list[str], timeout_s: float) -> dict:
    """Spawn -> first stdout byte, and spawn -> exit, in seconds; the output for the record."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"}, bufsize=0)
    first = None
    output = b""
    try:
        while chunk := process.stdout.read(1):
            output += chunk
            if first is None and chunk.strip():
                first = time.perf_counter()
            if first is not None:
                output += process.stdout.read()
                break
        process.wait(timeout_s)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    total_s = time.perf_counter() - start
    error = process.stderr.read().decode(errors="replace")[-1000:]
    if process.returncode != 0 or first is None:
        raise RuntimeError(f"`{shlex.join(command[:-1])} ...` exited with code {process.returncode} "
                           f"and {'no' if first is None else 'some'} output: {error}")
    return {"start_to_first_token_s": first - start, "total_s": total_s, "output_chars": len(output.decode(errors="replace"))}


def measure(files, profile, logs: Path, new_tokens: int = 16) -> dict:
    """{"cold": figures, "warm": figures} of two fresh client processes against one resident server."""
    spec: ServerSpec = server_spec("ovchat", files, 1, profile)
    try:
        with launched(spec, logs / "server-ovchat-client.log") as url:
            run_load(url, [make_prompt(8, seed=970_000_000)], 1, 4, served_model(url))  # the server's first answer
            out = {}
            for cache in ("cold", "warm"):
                dropped = profile.drop_page_cache and cache == "cold" and drop_page_cache()
                prompt = make_prompt(12, seed=int(time.time() * 1000) % 1_000_000_000)  # fresh: no cached prefix
                out[cache] = dict(time_client(client_command(profile, url, prompt, new_tokens), profile.timeout_s),
                                  page_cache_dropped=dropped)
            return out
    except ServerStartError as error:
        raise RuntimeError(str(error)) from None
