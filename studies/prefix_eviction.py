"""Do two interleaved chats keep their cached prefixes on `ovchat serve`? (found while measuring
issue 31's `remember` scenario)

    python -m studies.prefix_eviction [--reps 3] [-- SERVE FLAGS, e.g. --kv-cache-gb 1]

Starts `ovchat serve` on the default model, then per repetition two new chats (a 300-word first
turn, 20-word turns after, answers of up to 32 greedy tokens), their turns alternating: chat 0
turn 1, chat 1 turn 1, chat 0 turn 2, ... A turn whose earlier turns stayed cached starts in a
fraction of the first turn's time; one whose blocks the other chat evicted prefills it all again.
Prints each turn's prompt tokens and time to first token (streamed chat completions).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import time

from ovchat.benchmarks.server_launch import free_port
from ovchat.benchmarks.server_load import make_prompt, sse_events
from ovchat.benchmarks.server_scenario import served_model


def turn(port: int, model: str, messages: list) -> tuple[float, str, int]:
    """(TTFT ms, answer, prompt tokens) of one streamed chat completion."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    body = {"model": model, "messages": messages, "max_tokens": 32, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    start, first, text, usage = time.perf_counter(), None, "", None
    connection.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    for event in sse_events(connection.getresponse()):
        if event == "[DONE]":
            break
        chunk = json.loads(event)
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or []:
            if delta := (choice.get("delta") or {}).get("content"):
                first = first or time.perf_counter()
                text += delta
    connection.close()
    return (first - start) * 1000, text, usage["prompt_tokens"]


def wait_healthy(port: int, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit("ovchat serve did not become healthy")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("serve_flags", nargs="*", help="more `ovchat serve` flags (after --)")
    args = parser.parse_args(argv)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "ovchat", "serve", "--port", str(port), "--no-store",
                               *args.serve_flags], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        wait_healthy(port)
        model = served_model(f"http://127.0.0.1:{port}")
        turn(port, model, [{"role": "user", "content": "hi"}])  # warm-up
        for rep in range(args.reps):
            chats = [[{"role": "user", "content": make_prompt(300, seed=5000 + rep * 10 + k)}] for k in range(2)]
            cells = []
            for number in range(1, 4):
                for k, chat in enumerate(chats):
                    ttft_ms, answer, tokens = turn(port, model, chat)
                    cells.append(f"chat {k} turn {number}: {tokens} tokens {ttft_ms:.0f} ms")
                    chat += [{"role": "assistant", "content": answer},
                             {"role": "user", "content": make_prompt(20, seed=9000 + rep * 100 + k * 10 + number)}]
            print(" | ".join(cells), flush=True)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    print("load average", open("/proc/loadavg").read().split()[0], "; serve flags:", " ".join(args.serve_flags) or "none")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
