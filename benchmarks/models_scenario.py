"""The `models` scenario (issue 29 point 8): what serving several models from one `ovchat serve`
costs, each figure beside its baseline measured in the same repetition.

The model's exported folder is served under three names (a, b, c: three engine processes of the
same files, as three different models of that size would be), greedy, EOS ignored, short prompts:

  cold            first token of the first request for an unloaded model (its load included)
  warm            first token of the next request for the same, loaded, model
  fresh serve     `ovchat serve -m MODEL` started for that request: process start to first token
  alternating     first token of requests alternating a, b, a, b under --models-max 1 (each one
                  unloads the other model and loads its own)
  memory          the engine processes' RSS with 1, 2 and 3 models loaded (GET /v1/models)

Ratios: cold / warm, cold / fresh serve (below 1: loading on demand beats starting a server),
alternating / warm, memory 2/1 and 3/1. Not measured here: one model's tokens/s at 16 streams
beside others (docs/server.md says so). It runs only when named: `ovchat bench --scenario models`.
"""

from __future__ import annotations

import http.client
import json
import shlex
import statistics
import sys
import time

from .pairing import stats
from .scenarios import Scenario, Skip, WorkerError
from .server_launch import ServerSpec, ServerStartError, launched
from .server_load import make_prompt, stream_chat
from .server_scenario import served_model, server_spec, unavailable

BACKENDS = ("ovchat-process",)
NEW_TOKENS = 8
PROMPT_WORDS = 16
ALTERNATIONS = 4
PLAIN = {"ignore_eos": True, "repetition_penalty": 1.0, "frequency_penalty": 0.0}


def _serve_command(profile) -> list[str]:
    return shlex.split(profile.ovchat_serve_cmd) if profile.ovchat_serve_cmd else [sys.executable, "-m", "ovchat", "serve"]


def _several(files, profile, models_max: int) -> ServerSpec:
    names = [f"{name}={files.ir}" for name in "abc"]
    return ServerSpec(f"ovchat serve, 3 models, at most {models_max}",
                      [*_serve_command(profile), *[flag for name in names for flag in ("-m", name)],
                       "--models-max", str(models_max), "--max-concurrency", "4", "--host", "127.0.0.1",
                       "--port", "{port}"], ready_timeout_s=profile.timeout_s)


def _first_token_ms(url: str, model: str, seed: int, timeout_s: float) -> float:
    result = stream_chat(url, make_prompt(PROMPT_WORDS, seed=seed), NEW_TOKENS, model, PLAIN, timeout_s=timeout_s)
    if not result.ok:
        raise WorkerError(f"a request to {model} failed: {result.error}")
    return result.ttft_ms


def _memory_mb(url: str) -> float:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("GET", "/v1/models")
        cards = json.loads(connection.getresponse().read())["data"]
    finally:
        connection.close()
    return sum(card.get("memory_bytes") or 0 for card in cards if card["state"] == "loaded") / 2**20


def models_rep(ctx, files, device, backend, rep) -> dict:
    if device != "CPU":
        raise Skip("the models scenario runs on CPU")
    if reason := unavailable(backend, files, ctx.profile):
        raise Skip(reason)
    timeout_s, seed, out = ctx.profile.timeout_s, 940_000_000 + rep * 1000, {}
    logs = ctx.out / "logs"
    try:
        with launched(_several(files, ctx.profile, 3), logs / "models-3.log") as url:
            out["cold_ttft_ms"] = _first_token_ms(url, "a", seed, timeout_s)
            out["warm_ttft_ms"] = statistics.median(_first_token_ms(url, "a", seed + i, timeout_s) for i in (1, 2, 3))
            out["memory_mb"] = [_memory_mb(url)]
            for i, name in enumerate("bc"):
                _first_token_ms(url, name, seed + 10 + i, timeout_s)
                out["memory_mb"].append(_memory_mb(url))
        with launched(_several(files, ctx.profile, 1), logs / "models-1.log") as url:
            _first_token_ms(url, "a", seed + 20, timeout_s)
            out["alternating_ttft_ms"] = statistics.median(
                _first_token_ms(url, "ba"[i % 2], seed + 30 + i, timeout_s) for i in range(ALTERNATIONS))
        started = time.perf_counter()
        spec = server_spec(backend, files, 4, ctx.profile)
        with launched(spec, logs / "models-fresh.log") as url:
            _first_token_ms(url, served_model(url), seed + 40, timeout_s)
            out["fresh_serve_first_token_ms"] = (time.perf_counter() - started) * 1000
    except ServerStartError as error:
        raise WorkerError(str(error)) from None
    out["cold_over_warm"] = out["cold_ttft_ms"] / out["warm_ttft_ms"]
    out["cold_over_fresh_serve"] = out["cold_ttft_ms"] / out["fresh_serve_first_token_ms"]
    out["alternating_over_warm"] = out["alternating_ttft_ms"] / out["warm_ttft_ms"]
    out["memory_2_over_1"] = out["memory_mb"][1] / out["memory_mb"][0]
    out["memory_3_over_1"] = out["memory_mb"][2] / out["memory_mb"][0]
    return out


FIGURES = {"cold_ttft_ms": "cold first token ms", "warm_ttft_ms": "warm first token ms",
           "fresh_serve_first_token_ms": "fresh `ovchat serve` to first token ms",
           "alternating_ttft_ms": "first token ms alternating 2 models under --models-max 1",
           "cold_over_warm": "ratio cold / warm", "cold_over_fresh_serve": "ratio cold / fresh serve",
           "alternating_over_warm": "ratio alternating / warm",
           "memory_2_over_1": "memory ratio 2 loaded / 1", "memory_3_over_1": "memory ratio 3 loaded / 1"}


def models_summary(reps: list[dict]) -> dict:
    summary = {title: stats(r[key] for r in reps) for key, title in FIGURES.items()}
    for i in range(3):
        summary[f"memory MB, {i + 1} loaded"] = stats(r["memory_mb"][i] for r in reps)
    return {"reps": reps, "summary": summary}


def models_figures(rep: dict) -> dict:
    """Lower is better."""
    return {title: rep[key] for key, title in FIGURES.items()}


MODELS = Scenario("models", "Several models behind one server: cold vs warm first token, alternating, memory (issue 29)",
                  models_rep, models_summary, models_figures, reps=lambda p: p.server_reps, backends=BACKENDS,
                  by_name_only=True)  # four server starts: `ovchat bench --scenario models` only
