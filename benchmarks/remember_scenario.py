"""The `remember` scenario (issue 31 point 7): a chat's 6th turn through `previous_response_id`
against the same chat sent whole, on `ovchat serve`'s Responses API.

Each repetition holds two 6-turn conversations of the same shape (user turns of USER_WORDS random
words, answers of at most NEW_TOKENS tokens, greedy), their turns interleaved (chain 1, whole 1,
chain 2, whole 2, ...; the other order in odd repetitions):

  chain   each turn sends only its user message and the previous turn's response id (stored)
  whole   each turn sends the whole conversation so far, as a client without stored responses
          does (store: false)
  cold    after them, one request: a 6-turn conversation never seen, sent whole (no prefix cached)

Timed: the 6th turn's time to first output text, streamed. The prefix cache should make chain and
whole about equal (their ratio ~1: what the server adds to look up and rebuild the chat), both
below cold (what the cache saves). Every conversation is new (random words with new seeds).
The server runs with a fixed KV cache (`--kv-cache-gb 1`): with the default one, grown as
needed, the two interleaved conversations evicted each other's cached prefix (each turn then
prefilled its whole prompt; benchmarks/README.md has both runs).
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import statistics
import time

from .pairing import stats
from .scenarios import Scenario, Skip, WorkerError
from .server_launch import ServerStartError, launched
from .server_load import make_prompt, sse_events
from .server_scenario import served_model, server_spec, unavailable

BACKENDS = ("ovchat-process",)
TURNS = 6
USER_WORDS = 48
NEW_TOKENS = 32
KV_CACHE_GB = 1  # room for both conversations' prefixes (see the docstring)


def load_average() -> float | None:
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except OSError:
        return None


def stream_turn(url: str, body: dict, timeout_s: float) -> dict:
    """One streamed /v1/responses request: its TTFT (sent -> first output_text.delta), text, id, usage."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout_s)
    start, first, text, final = time.perf_counter(), None, "", None
    try:
        connection.request("POST", "/v1/responses", json.dumps({**body, "stream": True}),
                           {"Content-Type": "application/json"})
        response = connection.getresponse()
        if response.status != 200:
            raise WorkerError(f"HTTP {response.status}: {response.read(2000).decode(errors='replace')}")
        for data in sse_events(response):
            event = json.loads(data)
            if event["type"] == "response.output_text.delta":
                first = first or time.perf_counter()
                text += event["delta"]
            elif event["type"] in ("response.completed", "response.incomplete"):
                final = event["response"]
            elif event["type"] == "error":
                raise WorkerError(f"error event: {data[:500]}")
    except (OSError, http.client.HTTPException, ValueError) as error:
        raise WorkerError(f"{type(error).__name__}: {error}") from None
    finally:
        connection.close()
    if final is None or first is None:
        raise WorkerError("the stream ended without text or without its last event")
    return {"ttft_ms": (first - start) * 1000, "text": text, "id": final["id"],
            "input_tokens": final["usage"]["input_tokens"]}


def conversation(url: str, model: str, seed: int, chained: bool, timeout_s: float):
    """A generator of one conversation's turns (each `next` sends one and yields what came back)."""
    common = {"model": model, "temperature": 0, "max_output_tokens": NEW_TOKENS}
    history, previous = [], None
    for turn in range(TURNS):
        user = make_prompt(USER_WORDS, seed=seed + turn)
        if chained:
            body = {**common, "input": user, "store": True, **({"previous_response_id": previous} if previous else {})}
        else:
            body = {**common, "input": [*history, {"role": "user", "content": user}], "store": False}
        result = stream_turn(url, body, timeout_s)
        history += [{"role": "user", "content": user}, {"role": "assistant", "content": result["text"]}]
        previous = result["id"]
        yield result


def cold_turn(url: str, model: str, seed: int, timeout_s: float) -> dict:
    """A 6th turn whose 5 earlier turns (answers as random words) no request has sent."""
    history = []
    for turn in range(TURNS - 1):
        history += [{"role": "user", "content": make_prompt(USER_WORDS, seed=seed + turn)},
                    {"role": "assistant", "content": make_prompt(NEW_TOKENS * 2 // 3, seed=seed + 50 + turn)}]
    body = {"model": model, "temperature": 0, "max_output_tokens": NEW_TOKENS, "store": False,
            "input": [*history, {"role": "user", "content": make_prompt(USER_WORDS, seed=seed + TURNS)}]}
    return stream_turn(url, body, timeout_s)


def remember_rep(ctx, files, device, backend, rep) -> dict:
    if device != "CPU":
        raise Skip("the remember scenario runs on CPU")
    if reason := unavailable(backend, files, ctx.profile):
        raise Skip(reason)
    db = ctx.out / "logs" / f"remember-responses-{rep}.sqlite"
    spec = server_spec(backend, files, 1, ctx.profile)
    spec = dataclasses.replace(spec, command=[*spec.command, "--responses-db", str(db), "--kv-cache-gb", str(KV_CACHE_GB)])
    timeout_s = ctx.profile.timeout_s
    base = 940_000_000 + rep * 1000
    out = {"load_average_start": load_average()}
    try:
        with launched(spec, ctx.out / "logs" / f"remember-{backend}.log") as url:
            model = served_model(url)
            for _ in conversation(url, model, 990_000_000 + rep * 1000, True, timeout_s):
                pass  # warm-up: one chained conversation, not measured
            chats = {"chain": conversation(url, model, base, True, timeout_s),
                     "whole": conversation(url, model, base + 100, False, timeout_s)}
            order = ["chain", "whole"] if rep % 2 == 0 else ["whole", "chain"]
            turns = {kind: [] for kind in chats}
            for _ in range(TURNS):
                for kind in order:
                    turns[kind].append(next(chats[kind]))
            cold = cold_turn(url, model, base + 200, timeout_s)
    except ServerStartError as error:
        raise WorkerError(str(error)) from None
    finally:
        for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            if path.exists():
                os.remove(path)
    for kind, results in turns.items():
        out[kind] = {"ttft_ms": [r["ttft_ms"] for r in results], "input_tokens": [r["input_tokens"] for r in results]}
    out["cold"] = {"ttft_ms": [cold["ttft_ms"]], "input_tokens": [cold["input_tokens"]]}
    out["ratio"] = out["chain"]["ttft_ms"][-1] / out["whole"]["ttft_ms"][-1]
    out["ratio_cold"] = out["whole"]["ttft_ms"][-1] / out["cold"]["ttft_ms"][-1]
    out["load_average_end"] = load_average()
    return out


def remember_summary(reps: list[dict]) -> dict:
    return {"reps": reps, "summary": {
        "6th turn TTFT ms, previous_response_id": stats(r["chain"]["ttft_ms"][-1] for r in reps),
        "6th turn TTFT ms, whole chat": stats(r["whole"]["ttft_ms"][-1] for r in reps),
        "6th turn TTFT ms, whole chat never seen (cold)": stats(r["cold"]["ttft_ms"][-1] for r in reps),
        "6th turn prompt tokens (chain / whole / cold)": [(r["chain"]["input_tokens"][-1], r["whole"]["input_tokens"][-1],
                                                           r["cold"]["input_tokens"][-1]) for r in reps],
        "ratio (previous_response_id / whole)": stats(r["ratio"] for r in reps),
        "ratio median": statistics.median(r["ratio"] for r in reps),
        "ratio (whole / cold)": stats(r["ratio_cold"] for r in reps)}}


def remember_figures(rep: dict) -> dict:
    """Lower is better."""
    return {"6th turn TTFT ms, previous_response_id": rep["chain"]["ttft_ms"][-1],
            "6th turn TTFT ms, whole chat": rep["whole"]["ttft_ms"][-1],
            "ratio, previous_response_id / whole": rep["ratio"]}


REMEMBER = Scenario("remember", "A chat's 6th turn by previous_response_id vs the chat sent whole (issue 31)",
                    remember_rep, remember_summary, remember_figures, reps=lambda p: p.server_reps, backends=BACKENDS)
