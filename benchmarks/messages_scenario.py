"""The `messages` scenario (issue 31 point 7): does the Anthropic Messages API cost anything over
chat completions for the same request?

One `ovchat serve` (the default layout, engine process) per repetition; after a warm-up request
on each route, ROUNDS rounds each send one streaming request to `/v1/chat/completions` and one to
`/v1/messages`, one at a time, the order alternating from round to round. Both requests of a
round carry prompts of the same length (new random words for every request, so neither gets the
other's prefix from the cache), greedy, EOS ignored, the same number of new tokens. Per request:
TTFT = request sent -> first text delta, decode tokens/s = (tokens - 1) / (last - first text
delta). The figures: each route's medians and their ratios, messages / chat (1.0: no cost).
"""

from __future__ import annotations

import http.client
import json
import statistics
import time
from urllib.parse import urlsplit

from .pairing import stats
from .scenarios import Scenario, Skip, WorkerError
from .server_launch import ServerStartError, launched
from .server_load import RequestResult, make_prompt, sse_events, stream_chat
from .server_scenario import served_model, server_spec, unavailable

BACKENDS = ("ovchat-process",)
ROUTES = ("chat", "messages")
ROUNDS = 4
PROMPT_WORDS = 64
GREEDY = {"temperature": 0, "ignore_eos": True}


def stream_messages(url: str, prompt: str, max_tokens: int, model: str, timeout_s: float = 600) -> RequestResult:
    """One streaming /v1/messages request, timed from its events as stream_chat times chat's."""
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "stream": True, **GREEDY}
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout_s)
    start = time.perf_counter()
    try:
        connection.request("POST", "/v1/messages", json.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        if response.status != 200:
            return RequestResult(False, error=f"HTTP {response.status}: {response.read(2000).decode(errors='replace')}")
        times, tokens, prompt_tokens, reason, stopped = [], 0, None, None, False
        for data in sse_events(response):
            event = json.loads(data)
            kind = event["type"]
            if kind == "error":
                return RequestResult(False, error=f"error event: {json.dumps(event['error'])[:500]}")
            if kind == "message_start":
                prompt_tokens = event["message"]["usage"]["input_tokens"]
            elif kind == "content_block_delta" and event["delta"].get("text"):
                times.append(time.perf_counter())
            elif kind == "message_delta":
                tokens, reason = event["usage"]["output_tokens"], event["delta"]["stop_reason"]
            elif kind == "message_stop":
                stopped = True
        end = time.perf_counter()
        if not stopped or not times:
            return RequestResult(False, error="the stream ended without message_stop or without text")
        tpot_ms = (times[-1] - times[0]) * 1000 / (tokens - 1) if tokens > 1 else None
        return RequestResult(True, (times[0] - start) * 1000, tpot_ms, (end - start) * 1000, tokens, prompt_tokens,
                             reason, "usage")
    except (OSError, http.client.HTTPException, ValueError, KeyError) as error:
        return RequestResult(False, error=f"{type(error).__name__}: {error}")
    finally:
        connection.close()


def send(url: str, model: str, route: str, prompt: str, max_tokens: int, timeout_s: float) -> RequestResult:
    if route == "messages":
        result = stream_messages(url, prompt, max_tokens, model, timeout_s)
    else:
        result = stream_chat(url, prompt, max_tokens, model, GREEDY, timeout_s=timeout_s)
    if not result.ok:
        raise WorkerError(f"/{route}: {result.error}")
    return result


def messages_rep(ctx, files, device, backend, rep) -> dict:
    if device != "CPU":
        raise Skip("the messages scenario runs on CPU")
    if reason := unavailable(backend, files, ctx.profile):
        raise Skip(reason)
    new_tokens, timeout_s = ctx.profile.server_new_tokens, ctx.profile.timeout_s
    samples = {route: [] for route in ROUTES}
    try:
        with launched(server_spec(backend, files, 1, ctx.profile), ctx.out / "logs" / f"messages-{backend}.log") as url:
            model = served_model(url)
            for i, route in enumerate(ROUTES):  # warm-up, not measured
                send(url, model, route, make_prompt(PROMPT_WORDS, seed=940_000_000 + rep * 100 + i), 8, timeout_s)
            for round_ in range(ROUNDS):
                order = ROUTES if (round_ + rep) % 2 == 0 else ROUTES[::-1]
                for j, route in enumerate(order):
                    prompt = make_prompt(PROMPT_WORDS, seed=950_000_000 + rep * 1000 + round_ * 10 + j)
                    result = send(url, model, route, prompt, new_tokens, timeout_s)
                    samples[route].append({"ttft_ms": result.ttft_ms, "tpot_ms": result.tpot_ms,
                                           "output_tokens": result.output_tokens, "prompt_tokens": result.prompt_tokens})
    except ServerStartError as error:
        raise WorkerError(str(error)) from None
    out = {"samples": samples, "new_tokens": new_tokens, "prompt_words": PROMPT_WORDS}
    for route in ROUTES:
        out[route] = {"ttft_ms_p50": statistics.median(s["ttft_ms"] for s in samples[route]),
                      "tokens_per_s_p50": statistics.median(1000 / s["tpot_ms"] for s in samples[route])}
    out["ttft_ratio"] = out["messages"]["ttft_ms_p50"] / out["chat"]["ttft_ms_p50"]
    out["tokens_per_s_ratio"] = out["messages"]["tokens_per_s_p50"] / out["chat"]["tokens_per_s_p50"]
    return out


def messages_summary(reps: list[dict]) -> dict:
    return {"reps": reps, "summary": {
        "chat TTFT p50 ms": stats(r["chat"]["ttft_ms_p50"] for r in reps),
        "messages TTFT p50 ms": stats(r["messages"]["ttft_ms_p50"] for r in reps),
        "chat decode tokens/s p50": stats(r["chat"]["tokens_per_s_p50"] for r in reps),
        "messages decode tokens/s p50": stats(r["messages"]["tokens_per_s_p50"] for r in reps),
        "TTFT ratio (messages / chat)": stats(r["ttft_ratio"] for r in reps),
        "tokens/s ratio (messages / chat)": stats(r["tokens_per_s_ratio"] for r in reps)}}


def messages_figures(rep: dict) -> dict:
    """Lower is better."""
    return {"TTFT p50 ms, /v1/chat/completions": rep["chat"]["ttft_ms_p50"],
            "TTFT p50 ms, /v1/messages": rep["messages"]["ttft_ms_p50"],
            "ms per token, /v1/chat/completions": 1000 / rep["chat"]["tokens_per_s_p50"],
            "ms per token, /v1/messages": 1000 / rep["messages"]["tokens_per_s_p50"]}


MESSAGES = Scenario("messages", "The Anthropic Messages API against chat completions, same requests (issue 31)",
                    messages_rep, messages_summary, messages_figures, reps=lambda p: p.server_reps + 1,
                    backends=BACKENDS)
