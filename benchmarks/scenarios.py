"""What a scenario is, the profiles, and the five scenarios measured in worker processes
(benchmarks/registry.py lists every scenario `ovchat bench` runs).

A scenario is measured one repetition at a time so the runner can interleave backends (rep 1:
A B C D, rep 2: B C D A, ...) and every backend sees the same machine load:

  run_rep(ctx, files, device, backend, rep) -> one repetition's raw data (spawns worker
                                               processes through `ctx.spawn(job)`)
  summarize(reps)                           -> the entry's data: median/min/max over repetitions
  figures(rep_data)                         -> {figure name: value} of one repetition, lower is
                                               better; the runner pairs them across backends
  reps(profile)                             -> how many repetitions

Raising `Skip` records the entry as skipped with its reason. Adding a scenario = four small
functions, one `Scenario(...)` and its entry in benchmarks/registry.py.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
from dataclasses import dataclass
from typing import Callable

from .backends import MAIN_BACKENDS
from .child import WorkerError  # noqa: F401  (the scenarios' failure, raised by the child protocol)
from .pairing import stats

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
    concurrency_reps: int = 3
    timeout_s: int = 3600
    drop_page_cache: bool = True  # coldstart's cold runs (slows the whole machine briefly)
    server_concurrency: tuple[int, ...] = (1, 4, 16)   # the server scenario (benchmarks/server_scenario.py)
    server_prompts: tuple[int, ...] = (32, 512)        # prompt tokens
    server_new_tokens: int = 64
    server_rounds: int = 1                             # requests per stream in one load
    server_reps: int = 2
    ovchat_serve_cmd: str = ""                         # "" = python -m ovchat serve


FULL = Profile()
QUICK = Profile(lengths=(32, 128), new_tokens=16, reps=2, chat_turns=6, chat_new_tokens=8, load_reps=1,
                memory_prompt=128, requests=2, concurrency_prompt=32, concurrency_new_tokens=16, concurrency_reps=1,
                timeout_s=600, drop_page_cache=False, server_concurrency=(1, 4), server_prompts=(32,),
                server_new_tokens=16, server_rounds=1, server_reps=1)  # 3.6 min on 2 busy cores (CI's budget: 6)


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    run_rep: Callable
    summarize: Callable
    figures: Callable
    reps: Callable = lambda profile: profile.reps
    backends: tuple[str, ...] = MAIN_BACKENDS
    by_name_only: bool = False  # runs only when --scenario names it (not in the default suite)


def _job(task: str, files, device: str, backend: str, **params) -> dict:
    return {"task": task, "backend": backend, "device": device, "model": files.__dict__, "params": params}


# ---- latency: TTFT/TPOT at each prompt length ------------------------------------------------

def latency_rep(ctx, files, device, backend, rep) -> dict:
    p = ctx.profile
    return ctx.spawn(_job("latency", files, device, backend, lengths=list(p.lengths), new_tokens=p.new_tokens,
                          warmup=p.warmup, reps=1, rep=rep))


def latency_summary(reps: list[dict]) -> dict:
    lengths = {length: [s for r in reps for s in r["lengths"][length]] for length in reps[0]["lengths"]}
    summary = {length: {metric: stats(s[metric] for s in samples)
                        for metric in ("ttft_ms", "tpot_ms", "tokens_per_s")}
               for length, samples in lengths.items()}
    return {"lengths": lengths, "summary": summary, "load_ms": stats(r["load_ms"] for r in reps)}


def latency_figures(rep: dict) -> dict:
    out = {}
    for length, samples in rep["lengths"].items():
        out[f"TTFT ms @{length}"] = statistics.mean(s["ttft_ms"] for s in samples)
        out[f"TPOT ms @{length}"] = statistics.mean(s["tpot_ms"] for s in samples)
    return out


# ---- chat: TTFT of each turn as the history grows --------------------------------------------

def chat_rep(ctx, files, device, backend, rep) -> dict:
    p = ctx.profile
    data = ctx.spawn(_job("chat", files, device, backend, turns=p.chat_turns, new_tokens=p.chat_new_tokens,
                          warmup=p.warmup, reps=1, rep=rep))
    if "skip" in data:
        raise Skip(data["skip"])
    return data


def chat_summary(reps: list[dict]) -> dict:
    runs = [run for r in reps for run in r["ttft_ms_per_turn"]]
    summary = [stats(run[turn] for run in runs) for turn in range(len(runs[0]))]
    first, last = summary[0]["median"], summary[-1]["median"]
    return {"ttft_ms_per_turn": runs, "summary": summary, "last_over_first": last / first if first else None}


def chat_figures(rep: dict) -> dict:
    runs = rep["ttft_ms_per_turn"]
    return {"TTFT ms, all turns": statistics.mean(sum(run) for run in runs),
            "TTFT ms, last turn": statistics.mean(run[-1] for run in runs)}


# ---- load: cold vs warm CACHE_DIR, a fresh process each --------------------------------------

def load_rep(ctx, files, device, backend, rep) -> dict:
    """Cold: a fresh empty CACHE_DIR; warm: a second fresh process on the same CACHE_DIR.
    llama.cpp has no compile cache: both are plain loads (mmap of a file in the page cache)."""
    cache_dir = tempfile.mkdtemp(prefix="ovchat-bench-cache-")
    try:
        return {label: ctx.spawn(_job("load", files, device, backend, cache_dir=cache_dir))
                for label in ("cold", "warm")}
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)


def load_summary(reps: list[dict]) -> dict:
    cold, warm = [r["cold"] for r in reps], [r["warm"] for r in reps]
    summary = {f"{label}_{metric}": stats(r[metric] for r in runs)
               for label, runs in (("cold", cold), ("warm", warm)) for metric in ("load_ms", "first_token_ms")}
    return {"cold": cold, "warm": warm, "summary": summary}


def load_figures(rep: dict) -> dict:
    return {"load ms, cold CACHE_DIR": rep["cold"]["load_ms"], "load ms, warm CACHE_DIR": rep["warm"]["load_ms"]}


# ---- memory: peak RSS, load + one generation -------------------------------------------------

def memory_rep(ctx, files, device, backend, rep) -> dict:
    p = ctx.profile
    return ctx.spawn(_job("memory", files, device, backend, prompt_len=p.memory_prompt, new_tokens=p.new_tokens))


def memory_summary(reps: list[dict]) -> dict:
    return {"runs": reps, **{k: statistics.median(r[k] for r in reps)
                             for k in ("rss_after_load_mb", "rss_end_mb", "peak_rss_mb")}}


def memory_figures(rep: dict) -> dict:
    return {"peak RSS MB": rep["peak_rss_mb"], "RSS after generation MB": rep["rss_end_mb"]}


# ---- concurrency: several requests at once, LATENCY vs THROUGHPUT ----------------------------

def concurrency_rep(ctx, files, device, backend, rep) -> dict:
    p = ctx.profile
    return {hint: ctx.spawn(_job("concurrency", files, device, backend, hint=hint, requests=p.requests,
                                 prompt_len=p.concurrency_prompt, new_tokens=p.concurrency_new_tokens,
                                 warmup=p.warmup, reps=1, rep=rep))["runs"][0]
            for hint in HINTS}


def concurrency_summary(reps: list[dict]) -> dict:
    out = {}
    for hint in HINTS:
        runs = [r[hint] for r in reps]
        out[hint] = {"runs": runs, "requests": len(runs[0]["latency_ms"]),
                     "summary": {"tokens_per_s": stats(r["tokens_per_s"] for r in runs),
                                 "latency_ms": stats(x for r in runs for x in r["latency_ms"]),
                                 "wall_ms": stats(r["wall_ms"] for r in runs)}}
    return out


def concurrency_figures(rep: dict) -> dict:
    return {f"wall ms, {hint}": rep[hint]["wall_ms"] for hint in HINTS}




LATENCY = Scenario("latency", "Generation latency: TTFT, TPOT, tokens/s by prompt length",
                   latency_rep, latency_summary, latency_figures)
# genai-pa here: with SDPA a turn's prefill slows as the history grows, PagedAttention's much less (measured).
CHAT = Scenario("chat", "6-turn chat: TTFT per turn as history grows", chat_rep, chat_summary, chat_figures,
                backends=MAIN_BACKENDS + ("genai-pa",))
LOAD = Scenario("load", "Model load: cold vs warm CACHE_DIR (fresh process each)",
                load_rep, load_summary, load_figures, reps=lambda p: p.load_reps)
MEMORY = Scenario("memory", "Peak resident memory, each backend in its own process",
                  memory_rep, memory_summary, memory_figures, reps=lambda p: 1)
CONCURRENCY = Scenario("concurrency", "Several requests at once: PERFORMANCE_HINT LATENCY vs THROUGHPUT",
                       concurrency_rep, concurrency_summary, concurrency_figures, reps=lambda p: p.concurrency_reps,
                       backends=("ovchat", "genai", "optimum"))
