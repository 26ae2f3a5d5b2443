"""The `coldstart` scenario (issue 6): process start to first token in a fresh process, cold then
warm CACHE_DIR (benchmarks/coldstart.py measures; the page cache is dropped on cold runs unless
--quick). Backend `ovchat-client` is a fresh `ovchat generate --server` process against a resident
`ovchat serve` (issue 11 point 5, benchmarks/client_first_token.py)."""

from __future__ import annotations

import subprocess

from . import client_first_token, coldstart, server_scenario
from .pairing import stats
from .scenarios import Scenario, Skip, WorkerError

BACKENDS = {"ovchat": "engine", "genai": "llmpipeline", "llamacpp": "llama.cpp", "ovchat-client": "client"}
FIGURES = ("start_to_first_token_s", "import_s", "load_s", "peak_rss_mb")


def coldstart_rep(ctx, files, device, backend, rep) -> dict:
    model = files.gguf if backend == "llamacpp" else (files.ir or files.gguf)
    if backend == "ovchat-client":
        reason = server_scenario.unavailable("ovchat", files, ctx.profile)
        if reason:
            raise Skip(reason)
        try:
            return client_first_token.measure(files, ctx.profile, ctx.out / "logs")
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            raise WorkerError(str(error)[-2000:]) from None
    return {cache: coldstart.measure(BACKENDS[backend], model, device, cache, timeout_s=ctx.profile.timeout_s,
                                     new_tokens=16, drop_caches=ctx.profile.drop_page_cache,
                                     log_path=ctx.out / "logs" / f"{ctx.log_name}.log")
            for cache in ("cold", "warm")}


def coldstart_summary(reps: list[dict]) -> dict:
    return {cache: {"runs": [r[cache] for r in reps],
                    "summary": {k: stats(r[cache][k] for r in reps if r[cache].get(k) is not None)
                                for k in FIGURES}}
            for cache in ("cold", "warm")}


def coldstart_figures(rep: dict) -> dict:
    return {f"start→1st token s, {cache}": rep[cache]["start_to_first_token_s"] for cache in ("cold", "warm")}


COLDSTART = Scenario("coldstart", "Process start to first token (fresh process), cold vs warm CACHE_DIR",
                     coldstart_rep, coldstart_summary, coldstart_figures, reps=lambda p: p.load_reps,
                     backends=tuple(BACKENDS))
