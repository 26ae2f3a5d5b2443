"""CPU time per generated token of `ovchat serve --in-process` under 16 streams, for two builds
side by side (issue 28: did the request path cost the in-process layout throughput?).

Aggregate tokens/s on a shared 2-core machine swings with the other work on it; the CPU the
server's process (and its children) spent per generated token swings less, and a build that
does more Python work per token shows it there. Each run: one server, a warm-up round, then
`--rounds` rounds of 16 streamed chat requests (fresh 24-word prompts, 64 tokens, EOS ignored,
greedy), tokens counted from `usage`. Builds alternate, `--pairs` times.

    python -m studies.inprocess_cpu --python NEW/.venv/bin/python --python OLD/.venv/bin/python \
        --out studies/results/inprocess-cpu.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import subprocess
import threading
import time
from pathlib import Path

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau".split()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_ticks(pid: int) -> int:
    """utime + stime of `pid` and its direct children, in clock ticks."""
    total = 0
    for p in [pid, *(int(x) for x in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split())]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total


def _stream(port: int, prompt: str, counts: list) -> None:
    body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": 64, "ignore_eos": True, "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True}}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    connection.request("POST", "/v1/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"})
    tokens = 0
    for line in connection.getresponse():
        if line.startswith(b"data: {") and b'"usage"' in line and (usage := json.loads(line[6:]).get("usage")):
            tokens = usage["completion_tokens"]
    counts.append(tokens)


def _round(port: int, rng: random.Random, streams: int) -> int:
    counts: list[int] = []
    threads = [threading.Thread(target=_stream, args=(port, " ".join(rng.choice(WORDS) for _ in range(24)), counts))
               for _ in range(streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts)


def run(python: str, model: str, rounds: int, streams: int, seed: int) -> dict:
    port = _free_port()
    server = subprocess.Popen([python, "-m", "ovchat", "serve", "--in-process", "-m", model, "--port", str(port)],
                              cwd="/tmp", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # not this checkout's ovchat/
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                connection.request("GET", "/health")
                if connection.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError(f"{python}: the server did not start")
            time.sleep(0.5)
        rng = random.Random(seed)
        _round(port, rng, streams)  # warm-up
        started, ticks = time.perf_counter(), _cpu_ticks(server.pid)
        tokens = sum(_round(port, rng, streams) for _ in range(rounds))
        cpu_s = (_cpu_ticks(server.pid) - ticks) / os.sysconf("SC_CLK_TCK")
        wall_s = time.perf_counter() - started
        return {"python": python, "tokens": tokens, "cpu_s": cpu_s, "wall_s": wall_s,
                "cpu_ms_per_token": cpu_s * 1000 / tokens, "tokens_per_s": tokens / wall_s, "load": os.getloadavg()[0]}
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", action="append", required=True, help="a build's Python (repeat: 2 builds)")
    parser.add_argument("--model", default=os.path.expanduser("~/.cache/ovchat/models/smollm2-135m-instruct-int4"))
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--out", default="studies/results/inprocess-cpu.json")
    args = parser.parse_args()
    runs = []
    for pair in range(args.pairs):
        for python in args.python:
            runs.append({"pair": pair + 1, **run(python, args.model, args.rounds, args.streams, seed=pair)})
            print(json.dumps(runs[-1]), flush=True)
    Path(args.out).write_text(json.dumps({"runs": runs}, indent=1))


if __name__ == "__main__":
    main()
