"""The server benchmark's baseline: today's one-at-a-time engine, in process, under the same load.

    python -m ovchat.benchmarks.server_baseline    (run by benchmarks/server_scenario.py: benchmarks/child.py)

`Engine.load(IR)` in its default single mode (SDPA LLMPipeline, one generation at a time, a FIFO
queue), then every load of the job, the same prompts as the servers get: C caller threads
each stream chat requests through `eng.stream(...)`, so requests that arrive together are
served one after another, and a request's TTFT includes its wait in the queue, as a client of
a one-at-a-time server would see it. The timings come from the stream's pieces, as the HTTP
load generator takes them from SSE chunks; EOS is ignored (the servers get `ignore_eos` where
they accept it). Answers {"loads": [LoadResult dicts], "load_s": ...}.
"""

from __future__ import annotations

import sys
import time

from .child import serve
from .server_load import RequestResult, run_requests


def stream_engine(eng, options_cls, prompt: str, max_tokens: int) -> RequestResult:
    options = options_cls(max_new_tokens=max_tokens, ignore_eos=True)  # greedy by default
    start = time.perf_counter()
    times = []
    try:
        with eng.stream([{"role": "user", "content": prompt}], options) as stream:
            for piece in stream:
                if piece:
                    times.append(time.perf_counter())
            result = stream.result
    except Exception as error:  # recorded as this request's failure, as an HTTP error would be
        return RequestResult(False, error=f"{type(error).__name__}: {error}")
    end = time.perf_counter()
    if not times:
        return RequestResult(False, latency_ms=(end - start) * 1000, error="no content")
    tokens = result.output_tokens
    tpot = (times[-1] - times[0]) * 1000 / (tokens - 1) if tokens > 1 else None
    return RequestResult(True, (times[0] - start) * 1000, tpot, (end - start) * 1000, tokens, result.input_tokens,
                         result.finish_reason, "usage")


def run(job: dict) -> dict:
    from .. import engine
    start = time.perf_counter()
    eng = engine.Engine.load(job["ir"], device=job.get("device", "CPU"))
    load_s = time.perf_counter() - start
    try:
        loads = []
        for load in job["loads"]:
            result = run_requests(lambda p: stream_engine(eng, engine.GenerationOptions, p, load["max_tokens"]),
                                  load["prompts"], load["concurrency"])
            loads.append(dict(result.to_dict(), warmup=load.get("warmup", False)))
            print(f"    baseline C={load['concurrency']} {len(load['prompts'])} requests: "
                  f"{result.aggregate_tokens_per_s:.1f} tokens/s", file=sys.stderr, flush=True)
        return {"loads": loads, "load_s": load_s, "mode": eng.mode}
    finally:
        eng.close()


if __name__ == "__main__":
    sys.exit(serve(run))
