"""A memory soak of `ovchat serve` (issue 21 point 7): does RSS stay flat under a long load?

    python -m ovchat.benchmarks.soak --minutes 10 --streams 8            # the default model
    python -m ovchat.benchmarks.soak -m MODEL --minutes 3 --in-process   # the in-process layout
    python -m ovchat.benchmarks.soak --serve-cmd "/other/.venv/bin/ovchat serve"   # another build

Starts `ovchat serve` on 127.0.0.1 (its own process group, always stopped), then `--streams`
clients each send streamed chat requests back to back for `--minutes`: short greedy answers to
a few fixed questions, and a `--disconnect` share of them hang up after 4 chunks. Every
`--every` seconds it samples the RSS of the server and its engine process (psutil, the whole
process tree). The report is a table of the samples, the verdict (after the first minute, RSS
stays within `--within` percent of its value at one minute: the first minute holds the warm-up,
compiled kernels and allocator pools), and one JSON line. Not a test: it takes minutes.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .server_launch import ServerSpec, free_port, log_tail, stop, wait_healthy
from .server_load import sse_events

QUESTIONS = ["What is the capital of France?", "What is the capital of Italy?", "Who wrote Romeo and Juliet?",
             "Name three primary colors.", "What is 12 times 12?"]


@dataclass
class Counts:
    finished: int = 0
    disconnected: int = 0
    errors: int = 0
    error_samples: list = field(default_factory=list)


@dataclass(frozen=True)
class Sample:
    elapsed_s: float
    rss_mb: float
    requests: int


def tree_rss_mb(pid: int) -> float:
    import psutil
    root = psutil.Process(pid)
    total = 0
    for process in [root, *root.children(recursive=True)]:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def one_request(url: str, question: str, max_tokens: int, hang_up: bool, counts: Counts, lock: threading.Lock) -> None:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=120)
    body = {"messages": [{"role": "user", "content": question}], "max_tokens": max_tokens, "stream": True}
    outcome = "errors"
    try:
        connection.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {response.read()[:200]!r}")
        for chunks, event in enumerate(sse_events(response), 1):
            if event == "[DONE]":
                outcome = "finished"
                return
            if event.startswith('{"error"'):
                raise RuntimeError(event[:200])
            if hang_up and chunks == 4:
                outcome = "disconnected"
                return
        raise RuntimeError("the stream ended without [DONE]")
    except (OSError, RuntimeError, http.client.HTTPException) as error:
        with lock:
            if len(counts.error_samples) < 5:
                counts.error_samples.append(str(error))
    finally:
        connection.close()
        with lock:
            setattr(counts, outcome, getattr(counts, outcome) + 1)


def client(url: str, deadline: float, args, counts: Counts, lock: threading.Lock, seed: int) -> None:
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        one_request(url, rng.choice(QUESTIONS), args.max_tokens, rng.random() < args.disconnect, counts, lock)


def soak(args) -> dict:
    port = free_port()
    serve = shlex.split(args.serve_cmd) if args.serve_cmd else [sys.executable, "-m", "ovchat", "serve"]
    command = [*serve, "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
               "--max-concurrency", str(max(args.streams, 1))]
    if args.model:
        command += ["-m", args.model]
    if args.in_process:
        command.append("--in-process")
    log_path = Path(tempfile.gettempdir()) / f"ovchat-soak-{os.getpid()}.log"
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    counts, lock, samples = Counts(), threading.Lock(), []
    try:
        wait_healthy(process, url, ServerSpec("ovchat serve", command, ready_timeout_s=600), log_path)
        start = time.monotonic()
        deadline = start + args.minutes * 60
        clients = [threading.Thread(target=client, args=(url, deadline, args, counts, lock, i), daemon=True)
                   for i in range(args.streams)]
        for thread in clients:
            thread.start()
        while time.monotonic() < deadline:
            samples.append(Sample(round(time.monotonic() - start, 1), round(tree_rss_mb(process.pid), 1),
                                  counts.finished + counts.disconnected + counts.errors))
            print(f"{samples[-1].elapsed_s:7.0f} s  {samples[-1].rss_mb:8.1f} MB  {samples[-1].requests:6d} requests",
                  flush=True)
            time.sleep(min(args.every, max(deadline - time.monotonic(), 0)))
        for thread in clients:
            thread.join(150)
        samples.append(Sample(round(time.monotonic() - start, 1), round(tree_rss_mb(process.pid), 1),
                              counts.finished + counts.disconnected + counts.errors))
    finally:
        stopped = stop(process, 30)
        if process.returncode not in (0, None) and not samples:
            print(log_tail(log_path), file=sys.stderr)
    return verdict(samples, counts, args, stopped.returncode)


def verdict(samples: list[Sample], counts: Counts, args, returncode) -> dict:
    after = [s for s in samples if s.elapsed_s >= 60] or samples[-1:]
    base = after[0].rss_mb if after else 0.0
    worst = max((abs(s.rss_mb - base) / base * 100 for s in after), default=0.0) if base else 0.0
    requests = counts.finished + counts.disconnected + counts.errors
    growth_kb = ((after[-1].rss_mb - base) * 1024 / max(after[-1].requests - after[0].requests, 1)) if after else 0.0
    return {"scenario": "soak", "layout": "in-process" if args.in_process else "engine-process",
            "serve_cmd": args.serve_cmd or "python -m ovchat serve",
            "model": args.model or "default", "streams": args.streams, "minutes": args.minutes,
            "disconnect_share": args.disconnect, "requests": requests, "finished": counts.finished,
            "disconnected": counts.disconnected, "errors": counts.errors, "error_samples": counts.error_samples,
            "rss_mb_at_start": samples[0].rss_mb if samples else None, "rss_mb_at_1_min": base,
            "rss_mb_at_end": after[-1].rss_mb if after else None, "max_change_after_1_min_pct": round(worst, 2),
            "kb_per_request_after_1_min": round(growth_kb, 2), "within_pct": args.within,
            "flat": worst <= args.within, "load_average": os.getloadavg(), "server_exit_code": returncode,
            "samples": [asdict(s) for s in samples]}


def setup_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ovchat.benchmarks.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("-m", "--model", help="model folder (default: the embedded default model)")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--streams", type=int, default=8)
    p.add_argument("--disconnect", type=float, default=0.2, help="share of requests that hang up after 4 chunks")
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--every", type=float, default=15.0, help="seconds between RSS samples")
    p.add_argument("--within", type=float, default=5.0, help="the flatness bound, percent")
    p.add_argument("--in-process", action="store_true", help="serve with the engine in the server's process")
    p.add_argument("--serve-cmd", help="replaces `python -m ovchat serve`, e.g. another worktree's build "
                                       "(a build from before issue 21 runs in process by default and has no --in-process)")
    p.add_argument("--out", type=Path, help="also write the JSON report here")
    return p


def main(argv=None) -> int:
    args = setup_arg_parser().parse_args(argv)
    report = soak(args)
    print(f"\n{report['requests']} requests ({report['finished']} finished, {report['disconnected']} disconnected, "
          f"{report['errors']} errors) over {args.minutes:g} min, {args.streams} streams, {report['layout']}; "
          f"load average {report['load_average'][0]:.1f}")
    print(f"RSS {report['rss_mb_at_start']} MB at start, {report['rss_mb_at_1_min']} MB at 1 min, "
          f"{report['rss_mb_at_end']} MB at the end: at most {report['max_change_after_1_min_pct']} % from the 1-minute "
          f"value ({report['kb_per_request_after_1_min']} KB per request): "
          + ("flat" if report["flat"] else f"NOT within {args.within:g} %"))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if k != "samples"}))
    return 0 if report["flat"] and not report["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
