"""The `starts` scenario (issue 28 point 2): does one request's start wait for another's?

Against `ovchat serve` (both layouts, `--in-process` and the engine process), each repetition
sends two loads of 16 streams at once, greedy, EOS ignored:

  plain     8 plain requests (measured) beside 8 other plain requests
  schemas   8 plain requests (measured) beside 8 requests that each carry a JSON schema the
            server has never seen (its grammar compiles before that request can start)

The figure is the measured requests' time to first token (p50) in each load, and their ratio
schemas / plain: how much other requests' grammar compiles delay a plain request's start. A
server whose starts wait in line behind compiles has a large ratio (main before issue 28: 2.8x
and 5.1x, measured by hand); one whose starts never wait on each other stays near 1, apart from
the compiles' share of the CPU. Every repetition uses new prompts and new schemas.
"""

from __future__ import annotations

import statistics

from .pairing import stats
from .scenarios import Scenario, Skip, WorkerError
from .server_launch import ServerStartError, launched
from .server_load import make_prompt, percentile, run_requests, stream_chat
from .server_scenario import served_model, server_spec, unavailable

BACKENDS = ("ovchat-process", "ovchat")
MEASURED = 8        # plain requests whose first token is timed
NEIGHBOURS = 8      # the requests sent beside them
NEW_TOKENS = 16
PROMPT_WORDS = 24
PLAIN = {"ignore_eos": True, "repetition_penalty": 1.0, "frequency_penalty": 0.0}


def new_schema(seed: int) -> dict:
    """A JSON schema no request has carried before (its property names hold the seed)."""
    names = [f"field_{seed}_{k}" for k in range(3)]
    schema = {"type": "object", "properties": {name: {"type": "string", "maxLength": 12} for name in names},
              "required": names}
    return {"type": "json_schema", "json_schema": {"name": f"s{seed}", "schema": schema}}


def plan(rep: int) -> dict:
    """Both loads of one repetition: (prompt, extra fields, measured) per request, neighbours first."""
    def load(kind: str) -> list[tuple]:
        base = (rep * 10 + (kind == "schemas")) * 1000
        neighbours = [(make_prompt(PROMPT_WORDS, seed=920_000_000 + base + i),
                       {**PLAIN, "response_format": new_schema(base + i)} if kind == "schemas" else PLAIN, False)
                      for i in range(NEIGHBOURS)]
        measured = [(make_prompt(PROMPT_WORDS, seed=930_000_000 + base + i), PLAIN, True) for i in range(MEASURED)]
        return neighbours + measured
    return {"plain": load("plain"), "schemas": load("schemas")}


def run_load(url: str, model: str, requests: list[tuple], timeout_s: float) -> dict:
    def send(request):
        prompt, extra, _ = request
        return stream_chat(url, prompt, NEW_TOKENS, model, extra, timeout_s=timeout_s)
    result = run_requests(send, requests, len(requests))
    measured = [r for r, request in zip(result.results, requests) if request[2]]
    failed = [r.error for r in result.results if not r.ok]
    if failed:
        raise WorkerError(f"{len(failed)} of {len(requests)} requests failed, e.g. {failed[0]}")
    ttfts = [r.ttft_ms for r in measured]
    return {"measured_ttft_ms": ttfts, "measured_ttft_ms_p50": percentile(ttfts, 50)}


def starts_rep(ctx, files, device, backend, rep) -> dict:
    if device != "CPU":
        raise Skip("the starts scenario runs on CPU")
    if reason := unavailable(backend, files, ctx.profile):
        raise Skip(reason)
    spec = server_spec(backend, files, MEASURED + NEIGHBOURS, ctx.profile)
    loads = plan(rep)
    try:
        with launched(spec, ctx.out / "logs" / f"starts-{backend}.log") as url:
            model = served_model(url)
            warm = plan(10_000 + rep)  # one of each, not measured: compiles and caches warm
            for requests in warm.values():
                run_load(url, model, requests, ctx.profile.timeout_s)
            out = {kind: run_load(url, model, requests, ctx.profile.timeout_s) for kind, requests in loads.items()}
    except ServerStartError as error:
        raise WorkerError(str(error)) from None
    out["ratio"] = out["schemas"]["measured_ttft_ms_p50"] / out["plain"]["measured_ttft_ms_p50"]
    return out


def starts_summary(reps: list[dict]) -> dict:
    return {"reps": reps, "summary": {
        "plain TTFT p50 ms beside 8 plain requests": stats(r["plain"]["measured_ttft_ms_p50"] for r in reps),
        "plain TTFT p50 ms beside 8 new-schema requests": stats(r["schemas"]["measured_ttft_ms_p50"] for r in reps),
        "ratio (new schemas / plain neighbours)": stats(r["ratio"] for r in reps),
        "ratio median": statistics.median(r["ratio"] for r in reps)}}


def starts_figures(rep: dict) -> dict:
    """Lower is better."""
    return {"TTFT p50 ms, plain beside plain": rep["plain"]["measured_ttft_ms_p50"],
            "TTFT p50 ms, plain beside new schemas": rep["schemas"]["measured_ttft_ms_p50"],
            "ratio, beside new schemas / beside plain": rep["ratio"]}


STARTS = Scenario("starts", "Starts that never wait on each other: plain requests beside new JSON schemas (issue 28)",
                  starts_rep, starts_summary, starts_figures, reps=lambda p: p.server_reps, backends=BACKENDS)
