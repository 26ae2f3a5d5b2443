"""What a stored response costs the server's event loop (issue 31): `ResponseStore.put` (insert
and prune) and `get`, on a store filled to its count bound, with chained responses whose input
items grow turn by turn as a 6-turn chat's do.

    python -m studies.response_store [--count 10000] [--samples 2000] [--out FILE]

A write is ~0.3 ms, but every ~18th one also checkpoints the WAL into the database (an fsync):
its tail is why the server calls the store on worker threads, not on its event loop
(server/response_store.py). Prints a table (p50, p99, max, writes over 5 ms) and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from ovchat.server.response_store import ResponseStore


def turn(i: int, words: int = 60) -> tuple[dict, list]:
    """A response and its input items of a 6-turn chat's turn i % 6 (earlier turns included)."""
    text = " ".join(f"word{k}" for k in range(words))
    message = {"type": "message", "id": f"msg_{i}", "role": "assistant", "status": "completed",
               "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}
    items = [{"type": "message", "id": f"in_{i}_{k}", "role": "user", "content": [{"type": "input_text", "text": text}]}
             for k in range(2 * (i % 6) + 1)]
    response = {"id": f"resp_{i}", "object": "response", "created_at": int(time.time()), "status": "completed",
                "model": "m", "output": [message], "usage": {"input_tokens": 500, "output_tokens": 60}}
    return response, items


def percentiles(values: list[float]) -> dict:
    ordered = sorted(values)
    return {"p50": statistics.median(ordered), "p99": ordered[int(len(ordered) * 0.99)], "max": ordered[-1],
            "over_5ms": sum(value > 5 for value in ordered)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000, help="the store's count bound (default: %(default)s)")
    parser.add_argument("--samples", type=int, default=2000, help="timed writes and reads (default: %(default)s)")
    parser.add_argument("--out", help="also write the JSON line here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "responses.sqlite"
        store = ResponseStore(path, max_count=args.count)
        for i in range(args.count):  # fill it to the bound: every timed write then prunes one
            store.put("", *turn(i))
        puts, gets = [], []
        for i in range(args.count, args.count + args.samples):
            response, items = turn(i)
            start = time.perf_counter()
            store.put("", response, items)
            puts.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            store.get(f"resp_{i - 3}", "")
            gets.append((time.perf_counter() - start) * 1000)
        size_mb = sum(p.stat().st_size for p in Path(folder).iterdir()) / 2**20
        result = {"count": store.count(), "samples": args.samples, "put_ms": percentiles(puts),
                  "get_ms": percentiles(gets), "file_mb": round(size_mb, 1), "load_average": open("/proc/loadavg").read().split()[0]}
        store.close()
    print(f"{'':8}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}{'> 5 ms':>8}")
    for name in ("put_ms", "get_ms"):
        print(f"{name[:-3]:8}" + "".join(f"{result[name][k]:>10.3f}" for k in ("p50", "p99", "max"))
              + f"{result[name]['over_5ms']:>8}")
    print(f"{result['count']} responses, {result['file_mb']} MB on disk (file + WAL)")
    line = json.dumps(result)
    print(line)
    if args.out:
        Path(args.out).write_text(line + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
