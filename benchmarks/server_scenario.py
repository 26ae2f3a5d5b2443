"""The `server` scenario (issue 11 point 8): the same streaming load against OpenAI-compatible servers.

Backends, each measured the same way per repetition (the runner interleaves them):

  ovchat         `ovchat serve --in-process -m IR` (continuous batching, the engine in the server's
                 process); `--ovchat-serve-cmd` replaces `python -m ovchat serve`, e.g. to measure
                 another worktree's build (one from before issue 21 needs the ovchat-process backend:
                 it has no --in-process)
  llamacpp       llama-cpp-python's own server, `python -m llama_cpp.server` on the GGUF, 2 threads,
                 requests queued (`--interrupt_requests False`: by default a new request cancels the
                 stream in flight); it generates one request at a time
  llama-server   llama.cpp's server from the same vendored source (benchmarks/llama_server.py),
                 restarted for every concurrency C with `--parallel C -c C x per-request context`
  ovchat-single  the baseline: today's one-at-a-time engine in process (benchmarks/server_baseline.py)
  ovchat-process  `ovchat serve --engine-process`: the engine in a supervised child process
                 (engine/process.py; the default layout since issue 21), against the in-process layout
                 whose pipeline steps keep the GIL

The load (benchmarks/server_load.py): for each C in `server_concurrency` and each prompt size in
`server_prompts` (tokens, reached with random words: ~1 token a word in SmolLM2's vocabulary,
calibrated on the GGUF's tokenizer when llama-cpp-python is there), C streams send
C x `server_rounds` fresh prompts, greedy, `server_new_tokens` each, EOS ignored where the server
accepts a field for it (llama.cpp: `ignore_eos`, llama_cpp.server: `min_tokens`; a server that
answers 400 to the field runs without it, and the report says so). Warm-up requests first, on
every server start. Every repetition uses new prompts, the same ones for every backend.
"""

from __future__ import annotations

import functools
import http.client
import json
import os
import shlex
import statistics
import sys

from . import llama_server
from .child import run_once
from .pairing import stats
from .scenarios import Scenario, Skip, WorkerError
from .server_launch import ServerSpec, ServerStartError, launched
from .server_load import make_prompt, run_load

SERVER_BACKENDS = ("ovchat", "llamacpp", "llama-server", "ovchat-single", "ovchat-process")
LABELS = {"ovchat": "ovchat serve --in-process", "llamacpp": "llama_cpp.server", "llama-server": "llama-server --parallel C",
          "ovchat-single": "engine, one at a time (in process)", "ovchat-process": "ovchat serve (engine process)"}
THREADS = str(os.cpu_count() or 2)
_LLAMA_CPP_SERVER_MODULES = ("uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings")


def _has(module: str) -> bool:
    import importlib.util
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def unavailable(backend: str, files, profile) -> str | None:
    """Why this server backend can't run here (the command that fixes it when there is one)."""
    if backend in ("ovchat", "ovchat-single", "ovchat-process") and not files.ir:
        return f"no exported IR folder for {files.name}"
    if backend in ("ovchat", "ovchat-process") and not profile.ovchat_serve_cmd and not _has("ovchat.server"):
        return "this install has no `ovchat serve` (ovchat.server); pass --ovchat-serve-cmd to measure another build"
    if backend in ("llamacpp", "llama-server") and not files.gguf:
        return f"no GGUF file for {files.name}"
    if backend == "llamacpp":
        missing = [m for m in ("llama_cpp", *_LLAMA_CPP_SERVER_MODULES) if not _has(m)]
        return f"llama_cpp.server needs {', '.join(missing)}: pip install -e '.[bench]'" if missing else None
    if backend == "llama-server":
        return llama_server.missing_reason()
    return None


def per_request_context(profile) -> int:
    # the prompt, the answer and room for the chat template (SmolLM2's adds a ~30-token system
    # prompt); llama-server splits -c among its slots, and Phi-3's KV cache is ~0.4 MB a token
    return max(profile.server_prompts) + profile.server_new_tokens + 256


def server_spec(backend: str, files, concurrency: int, profile) -> ServerSpec:
    if backend in ("ovchat", "ovchat-process"):
        command = shlex.split(profile.ovchat_serve_cmd) if profile.ovchat_serve_cmd else [sys.executable, "-m", "ovchat", "serve"]
        # Each layout named explicitly: the default changed (engine process since issue 21), and
        # --ovchat-serve-cmd may run a build from before it (which takes --engine-process, not --in-process).
        command.append("--engine-process" if backend == "ovchat-process" else "--in-process")
        return ServerSpec(LABELS[backend], [*command, "-m", files.ir, "--host", "127.0.0.1", "--port", "{port}"],
                          ready_timeout_s=profile.timeout_s)
    if backend == "llamacpp":
        return ServerSpec("llama_cpp.server", [sys.executable, "-m", "llama_cpp.server", "--model", files.gguf,
                                               "--host", "127.0.0.1", "--port", "{port}", "--n_threads", THREADS,
                                               "--n_threads_batch", THREADS, "--n_ctx", str(per_request_context(profile)),
                                               # its default cancels the stream in flight when another request
                                               # arrives; queue them instead (it serves one at a time)
                                               "--interrupt_requests", "False"],
                          health_path="/v1/models", ready_timeout_s=profile.timeout_s)
    return ServerSpec(f"llama-server --parallel {concurrency}",
                      [str(llama_server.binary_path()), "-m", files.gguf, "--host", "127.0.0.1", "--port", "{port}",
                       "--parallel", str(concurrency), "-c", str(concurrency * per_request_context(profile)),
                       "-t", THREADS, "-tb", THREADS, *llama_server.RUNTIME_FLAGS], ready_timeout_s=profile.timeout_s)


def eos_fields(backend: str, max_tokens: int) -> dict:
    """The request field that makes this server ignore EOS (tried; dropped if answered with a 400).
    ovchat serve also gets plain greedy decoding: a request that leaves the penalties out takes the
    model's recommended ones, and the baselines decode without them."""
    plain = {"repetition_penalty": 1.0, "frequency_penalty": 0.0}
    return {"llamacpp": {"min_tokens": max_tokens}, "ovchat": {"ignore_eos": True, **plain},
            "ovchat-process": {"ignore_eos": True, **plain}}.get(backend, {"ignore_eos": True})


@functools.lru_cache(maxsize=8)
def tokens_per_word(gguf: str | None) -> float:
    """Tokens per prompt word in the model's vocabulary (llama-cpp-python's tokenizer on the GGUF,
    vocabulary only); 1.0 when it can't be read."""
    if not gguf:
        return 1.0
    try:
        import llama_cpp
        vocab = llama_cpp.Llama(model_path=gguf, vocab_only=True, verbose=False)
        text = make_prompt(400, seed=1)
        return len(vocab.tokenize(text.encode(), add_bos=False)) / len(text.split())
    except (ImportError, ValueError, OSError, RuntimeError):
        return 1.0


def plan(profile, rep: int, files) -> list[dict]:
    """The loads of one repetition: same prompts for every backend, new ones every repetition."""
    per_word = tokens_per_word(files.gguf)
    loads = []
    for concurrency in profile.server_concurrency:
        for target in profile.server_prompts:
            words = max(4, round(target / per_word) - 3)  # "Request N:" is ~3 tokens
            count = concurrency * profile.server_rounds
            prompts = [make_prompt(words, seed=((rep * 100 + concurrency) * 10_000 + target) * 1000 + i)
                       for i in range(count)]
            loads.append({"concurrency": concurrency, "prompt_target_tokens": target, "prompt_words": words,
                          "max_tokens": profile.server_new_tokens, "prompts": prompts})
    return loads


def warmup_loads(profile, concurrency: int) -> list[dict]:
    """A few short requests at this concurrency and one long one: compiles and caches warm, not measured."""
    short = [make_prompt(16, seed=900_000_000 + concurrency * 100 + i) for i in range(min(concurrency, 4))]
    long = [make_prompt(max(profile.server_prompts), seed=910_000_000 + concurrency)]
    return [{"concurrency": len(short), "prompts": short, "max_tokens": 8, "warmup": True},
            {"concurrency": 1, "prompts": long, "max_tokens": 4, "warmup": True}]


def served_model(url: str) -> str:
    """The first model id of GET /v1/models (servers may refuse an unknown model name)."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("GET", "/v1/models")
        return json.loads(connection.getresponse().read())["data"][0]["id"]
    except (OSError, http.client.HTTPException, ValueError, KeyError, IndexError):
        return "default"
    finally:
        connection.close()


def accepted_extra_fields(url: str, model: str, fields: dict) -> dict:
    """`fields` if the server takes them in a streaming request, else {} (a 400 names the field)."""
    probe = run_load(url, [make_prompt(8, seed=990_000_000)], 1, 2, model, fields)
    if probe.failed and "HTTP 400" in (probe.results[0].error or ""):
        return {}
    if probe.failed:
        raise WorkerError(f"the probe request failed: {probe.results[0].error}")
    return fields


def measure_server(ctx, files, backend: str, loads: list[dict]) -> dict:
    """Start the server (one per C for llama-server), warm it up, run the loads, stop it."""
    p = ctx.profile
    groups = ([[load for load in loads if load["concurrency"] == c] for c in p.server_concurrency]
              if backend == "llama-server" else [loads])
    out = {"loads": [], "servers": []}
    for group in groups:
        concurrency = max(load["concurrency"] for load in group)
        spec = server_spec(backend, files, concurrency, p)
        stops = []
        try:
            with launched(spec, ctx.out / "logs" / f"server-{backend}.log", on_stop=stops.append) as url:
                model = served_model(url)
                extra = accepted_extra_fields(url, model, eos_fields(backend, p.server_new_tokens))
                for load in warmup_loads(p, concurrency):
                    run_load(url, load["prompts"], load["concurrency"], load["max_tokens"], model, extra, timeout_s=p.timeout_s)
                for load in group:
                    result = run_load(url, load["prompts"], load["concurrency"], load["max_tokens"], model, extra,
                                      timeout_s=p.timeout_s)
                    out["loads"].append(_load_record(load, result.to_dict(), eos_ignored=bool(extra)))
        except ServerStartError as error:
            raise WorkerError(str(error)) from None
        out["servers"].append({"command": spec.command, "model": model, "extra_fields": extra,
                               "stop": stops[0].__dict__ if stops else None})
    return out


def measure_baseline(ctx, files, loads: list[dict]) -> dict:
    """The one-at-a-time engine in a fresh process (benchmarks/child.py)."""
    p = ctx.profile
    warmups = warmup_loads(p, max(p.server_concurrency))
    job = {"ir": files.ir, "loads": warmups + loads}
    answer = run_once("ovchat.benchmarks.server_baseline", job, p.timeout_s, ctx.out / "logs" / "server-ovchat-single.log")
    measured = answer["loads"][len(warmups):]
    return {"loads": [_load_record(load, result, eos_ignored=True) for load, result in zip(loads, measured)],
            "servers": []}


def _load_record(load: dict, result: dict, eos_ignored: bool) -> dict:
    return dict(result, prompt_target_tokens=load["prompt_target_tokens"], prompt_words=load["prompt_words"],
                max_tokens=load["max_tokens"], eos_ignored=eos_ignored)


def server_rep(ctx, files, device, backend, rep) -> dict:
    if device != "CPU":
        raise Skip("the server scenario runs on CPU (llama.cpp here is a CPU build)")
    reason = unavailable(backend, files, ctx.profile)
    if reason:
        raise Skip(reason)
    loads = plan(ctx.profile, rep, files)
    if backend == "ovchat-single":
        return measure_baseline(ctx, files, loads)
    return measure_server(ctx, files, backend, loads)


def load_key(load: dict) -> str:
    return f"{load['prompt_target_tokens']}-token prompt, {load['concurrency']} streams"


def server_summary(reps: list[dict]) -> dict:
    by_key: dict[str, list[dict]] = {}
    for rep in reps:
        for load in rep["loads"]:
            by_key.setdefault(load_key(load), []).append(load)
    summary = {}
    for key, loads in by_key.items():
        ttfts = [r["ttft_ms"] for load in loads for r in load["results"] if r["ok"]]
        summary[key] = {
            "concurrency": loads[0]["concurrency"], "prompt_target_tokens": loads[0]["prompt_target_tokens"],
            "requests": sum(load["requests"] for load in loads), "failed": sum(load["failed"] for load in loads),
            "aggregate_tokens_per_s": stats(load["aggregate_tokens_per_s"] for load in loads),
            "ttft_ms_p50": stats(load["ttft_ms_p50"] for load in loads if load["ttft_ms_p50"] is not None),
            "ttft_ms_p99": stats(load["ttft_ms_p99"] for load in loads if load["ttft_ms_p99"] is not None),
            "ttft_ms_p99_pooled": _pooled_p99(ttfts),
            "tpot_ms_p50": stats(load["tpot_ms_p50"] for load in loads if load["tpot_ms_p50"] is not None),
            "prompt_tokens": statistics.median([load["prompt_tokens_median"] for load in loads
                                                if load["prompt_tokens_median"] is not None] or [0]) or None,
            "output_tokens_per_request": statistics.median(r["output_tokens"] for load in loads
                                                           for r in load["results"] if r["ok"]) if ttfts else None,
            "eos_ignored": all(load["eos_ignored"] for load in loads)}
    return {"reps": reps, "summary": summary}


def _pooled_p99(values: list[float]) -> float | None:
    from .server_load import percentile
    return percentile(values, 99)


def server_figures(rep: dict) -> dict:
    """Lower is better: TTFT p50, TPOT p50 and ms per output token across all streams (1 / aggregate)."""
    out = {}
    for load in rep["loads"]:
        key = load_key(load)
        if load["ttft_ms_p50"] is not None:
            out[f"TTFT p50 ms, {key}"] = load["ttft_ms_p50"]
        if load["tpot_ms_p50"] is not None:
            out[f"TPOT p50 ms, {key}"] = load["tpot_ms_p50"]
        if load["aggregate_tokens_per_s"]:
            out[f"ms per token (1/aggregate), {key}"] = 1000 / load["aggregate_tokens_per_s"]
    return out


SERVER = Scenario("server", "OpenAI-compatible servers under 1/4/16 concurrent streams (issue 11)",
                  server_rep, server_summary, server_figures, reps=lambda p: p.server_reps, backends=SERVER_BACKENDS)
