"""The scenarios, as a registry: name -> Scenario(title, run).

`run(ctx, files, device, backend)` spawns worker processes through `ctx.spawn(job)` and returns
the entry's data (raw samples plus median/min/max summaries); raising `Skip` records the entry
as skipped with its reason. Adding a scenario = one function and one `register(...)` line;
benchmarks/coldstart.py (issue 6) plugs in the same way when it is present.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
from dataclasses import dataclass
from typing import Callable

HINTS = ("LATENCY", "THROUGHPUT")


class Skip(Exception):
    """This scenario does not apply to this backend/model/device; the message says why."""


@dataclass(frozen=True)
class Profile:
    """How much of each scenario to run. `quick` is the CI smoke profile."""
    lengths: tuple[int, ...] = (32, 512, 2048)
    new_tokens: int = 128
    warmup: int = 1
    reps: int = 3
    chat_turns: int = 6
    chat_new_tokens: int = 32
    load_reps: int = 3
    memory_prompt: int = 512
    requests: int = 4
    concurrency_prompt: int = 128
    concurrency_new_tokens: int = 64
    timeout_s: int = 3600


FULL = Profile()
QUICK = Profile(lengths=(32, 128), new_tokens=16, reps=2, chat_turns=6, chat_new_tokens=8, load_reps=1,
                memory_prompt=128, requests=2, concurrency_prompt=32, concurrency_new_tokens=16, timeout_s=600)


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    run: Callable
    backends: tuple[str, ...] = ()  # empty: every backend


SCENARIOS: dict[str, Scenario] = {}


def register(scenario: Scenario) -> Scenario:
    SCENARIOS[scenario.name] = scenario
    return scenario


def stats(values) -> dict:
    values = [float(v) for v in values]
    if not values:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def _job(ctx, task: str, files, device: str, backend: str, **params) -> dict:
    return {"task": task, "backend": backend, "device": device, "model": files.__dict__, "params": params}


def latency(ctx, files, device, backend) -> dict:
    p = ctx.profile
    data = ctx.spawn(_job(ctx, "latency", files, device, backend, lengths=list(p.lengths),
                          new_tokens=p.new_tokens, warmup=p.warmup, reps=p.reps))
    data["summary"] = {length: {metric: stats(s[metric] for s in samples)
                                for metric in ("ttft_ms", "tpot_ms", "tokens_per_s")}
                       for length, samples in data["lengths"].items()}
    return data


def chat(ctx, files, device, backend) -> dict:
    p = ctx.profile
    data = ctx.spawn(_job(ctx, "chat", files, device, backend, turns=p.chat_turns,
                          new_tokens=p.chat_new_tokens, warmup=p.warmup, reps=p.reps))
    runs = data["ttft_ms_per_turn"]
    data["summary"] = [stats(run[turn] for run in runs) for turn in range(p.chat_turns)]
    first, last = data["summary"][0]["median"], data["summary"][-1]["median"]
    data["last_over_first"] = last / first if first else None
    return data


def load(ctx, files, device, backend) -> dict:
    """Cold: a fresh empty CACHE_DIR; warm: a second fresh process on the same CACHE_DIR.
    llama.cpp has no compile cache: both are plain loads (mmap of a file in the page cache)."""
    cold, warm = [], []
    for _ in range(ctx.profile.load_reps):
        cache_dir = tempfile.mkdtemp(prefix="ovchat-bench-cache-")
        try:
            for into in (cold, warm):
                into.append(ctx.spawn(_job(ctx, "load", files, device, backend, cache_dir=cache_dir)))
        finally:
            shutil.rmtree(cache_dir, ignore_errors=True)
    summary = {}
    for label, runs in (("cold", cold), ("warm", warm)):
        for metric in ("load_ms", "first_token_ms"):
            summary[f"{label}_{metric}"] = stats(r[metric] for r in runs)
    note = "no compile cache (CACHE_DIR n/a)" if backend == "llamacpp" else ""
    return {"cold": cold, "warm": warm, "summary": summary, "note": note}


def memory(ctx, files, device, backend) -> dict:
    p = ctx.profile
    return ctx.spawn(_job(ctx, "memory", files, device, backend, prompt_len=p.memory_prompt,
                          new_tokens=p.new_tokens))


def concurrency(ctx, files, device, backend) -> dict:
    p = ctx.profile
    out = {}
    for hint in HINTS:
        data = ctx.spawn(_job(ctx, "concurrency", files, device, backend, hint=hint, requests=p.requests,
                              prompt_len=p.concurrency_prompt, new_tokens=p.concurrency_new_tokens,
                              warmup=p.warmup, reps=p.reps))
        runs = data["runs"]
        out[hint] = {"runs": runs, "requests": p.requests,
                     "summary": {"tokens_per_s": stats(r["tokens_per_s"] for r in runs),
                                 "latency_ms": stats(x for r in runs for x in r["latency_ms"]),
                                 "wall_ms": stats(r["wall_ms"] for r in runs)}}
    return out


register(Scenario("latency", "Generation latency: TTFT, TPOT, tokens/s by prompt length", latency))
register(Scenario("chat", "6-turn chat: TTFT per turn as history grows", chat))
register(Scenario("load", "Model load: cold vs warm CACHE_DIR (fresh process each)", load))
register(Scenario("memory", "Peak resident memory, each backend in its own process", memory))
register(Scenario("concurrency", "Several requests at once: PERFORMANCE_HINT LATENCY vs THROUGHPUT",
                  concurrency, backends=("ovchat", "genai", "optimum")))


_COLDSTART_BACKENDS = {"ovchat": "engine", "genai": "llmpipeline", "llamacpp": "llama.cpp"}


def coldstart(ctx, files, device, backend) -> dict:
    """Issue 6: process start to first token, fresh process, cold and warm CACHE_DIR
    (benchmarks/coldstart.py measures; the page cache is dropped on cold runs in full mode only)."""
    from . import coldstart as cs
    model = files.gguf if backend == "llamacpp" else (files.ir or files.gguf)
    out = {}
    for cache in ("cold", "warm"):
        runs = [cs.measure(_COLDSTART_BACKENDS[backend], model, device, cache, timeout_s=ctx.profile.timeout_s,
                           new_tokens=16, drop_caches=ctx.profile is not QUICK and ctx.profile.reps > 1)
                for _ in range(ctx.profile.load_reps)]
        out[cache] = {"runs": runs, "summary": {k: stats(r[k] for r in runs)
                                                for k in ("start_to_first_token_s", "import_s", "load_s",
                                                          "peak_rss_mb")}}
    return out


def plug_coldstart() -> None:
    """Issue 6's "process start to first token" scenario, if benchmarks/coldstart.py exists."""
    import importlib.util
    if importlib.util.find_spec("benchmarks.coldstart") is None or "coldstart" in SCENARIOS:
        return
    register(Scenario("coldstart", "Process start to first token (fresh process), cold vs warm CACHE_DIR",
                      coldstart, backends=tuple(_COLDSTART_BACKENDS)))


plug_coldstart()
