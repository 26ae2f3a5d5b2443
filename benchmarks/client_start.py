"""Process start to first token of a shell command: `ovchat generate --server URL` (a client of a
running `ovchat serve`) beside a fresh `ovchat generate` (loads the model itself, warm compile
cache) and beside llama.cpp's fresh process (benchmarks/coldstart.py, llama-cpp-python).

    python -m ovchat.benchmarks.client_start [--model default] [--runs 5]

The two `ovchat` commands are timed from spawn to the first byte of the answer on stdout (both
stream it; progress goes to stderr). Runs are interleaved, so machine noise hits all three alike.
Starts its own server on 127.0.0.1 at a free port and stops it at the end. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from . import coldstart

PROMPT = "What is the capital of France?"
OVCHAT = [sys.executable, "-m", "ovchat"]


def first_byte_s(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    process.stdout.read(1)
    first = time.perf_counter() - start
    process.stdout.read()
    if process.wait(timeout=600) != 0:
        raise RuntimeError(f"{' '.join(command)} failed")
    return first


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="default", help="default, phi3 or a model folder")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    model = str(coldstart.resolve_model(args.model, "engine"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("OVCHAT_SERVER", "OVCHAT_API_KEY")}
    server = subprocess.Popen([*OVCHAT, "serve", "-m", model, "--port", str(port), "--log-level", "warning"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, server)
        fresh = [*OVCHAT, "generate", "-m", model, "-n", "8", PROMPT]
        client = [*OVCHAT, "generate", "--server", url, "-n", "8", PROMPT]
        times = {"client_of_server_s": [], "fresh_generate_s": [], "llama_cpp_fresh_s": []}
        first_byte_s(client, env)  # one untimed run of each
        first_byte_s(fresh, env)
        for _ in range(args.runs):
            times["client_of_server_s"].append(first_byte_s(client, env))
            times["fresh_generate_s"].append(first_byte_s(fresh, env))
            times["llama_cpp_fresh_s"].append(coldstart.measure("llama.cpp", args.model, new_tokens=1)
                                              ["start_to_first_token_s"])
    finally:
        server.terminate()
        server.wait(timeout=60)
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        print(f"{name:20s} median {medians[name] * 1000:7.0f} ms  runs {[round(v * 1000) for v in values]}")
    print(json.dumps({"model": Path(model).name, "runs": args.runs, "median_s": medians, "runs_s": times,
                      "client_vs_llama_cpp": medians["client_of_server_s"] / medians["llama_cpp_fresh_s"],
                      "client_vs_fresh_generate": medians["client_of_server_s"] / medians["fresh_generate_s"]}))
    return 0


def _wait_healthy(url: str, server: subprocess.Popen, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("ovchat serve exited before it was ready")
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("ovchat serve was not ready in time")


if __name__ == "__main__":
    sys.exit(main())
