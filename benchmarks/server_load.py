"""A load generator for any OpenAI-compatible server: C concurrent streaming chat completions.

`run_load(url, prompts, concurrency, ...)` sends every prompt once as a streaming
`POST /v1/chat/completions` (greedy, a fixed `max_tokens`), at most `concurrency` in flight at a
time (a closed loop: a stream that ends lets the next prompt in), and measures from the SSE
stream, per request:

  ttft_ms    request sent -> first chunk carrying content (the role-only first delta does not count)
  tpot_ms    (last content chunk - first content chunk) / (output tokens - 1)
  output_tokens   `usage.completion_tokens` when the server sends usage (we ask with
                  `stream_options.include_usage`), else the number of content chunks
                  (`tokens_counted_by` says which)

and per run: wall time (first request sent -> last stream ended) and aggregate tokens/s (all
output tokens / wall time), TTFT p50/p99 and TPOT p50. Each prompt should be fresh: servers
cache prompt prefixes, and a repeated prompt measures that cache. `extra_fields` adds
server-specific fields (llama.cpp's `ignore_eos`) to every request body.

Only the standard library: http.client reads the chunked SSE body line by line. Every request
has a socket timeout; a failed request is recorded with its error, never retried.
"""

from __future__ import annotations

import http.client
import json
import math
import random
import statistics
import threading
import time
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

WORDS = ("time year people way day man thing woman life child world school state family student group country "
         "problem hand part place case week company system program question work government number night point "
         "home water room mother area money story fact month lot right study book eye job word business issue "
         "side kind head house service friend father power hour game line end member law car city community name "
         "president team minute idea kid body information back parent face others level office door health person "
         "art war history party result change morning reason research girl guy moment air teacher force education").split()


@dataclass(frozen=True)
class RequestResult:
    ok: bool
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    latency_ms: float | None = None
    output_tokens: int = 0
    prompt_tokens: int | None = None
    finish_reason: str | None = None
    tokens_counted_by: str = "chunks"   # "usage" when the server sent usage in the stream
    error: str | None = None


@dataclass(frozen=True)
class LoadResult:
    concurrency: int
    requests: int
    failed: int
    wall_s: float
    output_tokens: int
    aggregate_tokens_per_s: float
    ttft_ms_p50: float | None
    ttft_ms_p99: float | None
    tpot_ms_p50: float | None
    prompt_tokens_median: float | None
    results: list[RequestResult] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def percentile(values, q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return None
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def make_prompt(words: int, seed: int) -> str:
    """A fresh prompt of `words` random words (about 1-1.5 tokens each in a BPE vocabulary), a new
    sequence for every seed, so no two requests share a prefix beyond the chat template."""
    rng = random.Random(seed)
    return f"Request {seed}: " + " ".join(rng.choice(WORDS) for _ in range(words))


def stream_chat(url: str, prompt: str, max_tokens: int, model: str = "default", extra_fields: dict | None = None,
                api_key: str | None = None, timeout_s: float = 600) -> RequestResult:
    """One streaming chat completion; timings from the SSE events (see the module docstring)."""
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}, **(extra_fields or {})}
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout_s)
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    start = time.perf_counter()
    try:
        connection.request("POST", parts.path.rstrip("/") + "/v1/chat/completions", json.dumps(body), headers)
        response = connection.getresponse()
        if response.status != 200:
            return RequestResult(False, error=f"HTTP {response.status}: {response.read(2000).decode(errors='replace')}")
        return _read_stream(response, start)
    except (OSError, http.client.HTTPException, ValueError) as error:
        return RequestResult(False, error=f"{type(error).__name__}: {error}")
    finally:
        connection.close()


def _read_stream(response, start: float) -> RequestResult:
    content_times: list[float] = []
    usage, finish_reason, done = None, None, False
    for event in sse_events(response):
        if event == "[DONE]":
            done = True
            break
        chunk = json.loads(event)
        if "error" in chunk:
            return RequestResult(False, error=f"error event: {json.dumps(chunk['error'])[:500]}")
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content") or choice.get("text"):
                content_times.append(time.perf_counter())
            finish_reason = choice.get("finish_reason") or finish_reason
    end = time.perf_counter()
    if not done:
        return RequestResult(False, latency_ms=(end - start) * 1000, error="the stream ended without data: [DONE]")
    if usage and usage.get("completion_tokens") is not None:
        tokens, counted_by = int(usage["completion_tokens"]), "usage"
    else:
        tokens, counted_by = len(content_times), "chunks"
    if not content_times:
        return RequestResult(False, latency_ms=(end - start) * 1000, finish_reason=finish_reason,
                             error="no content in the stream")
    ttft_ms = (content_times[0] - start) * 1000
    tpot_ms = (content_times[-1] - content_times[0]) * 1000 / (tokens - 1) if tokens > 1 else None
    return RequestResult(True, ttft_ms, tpot_ms, (end - start) * 1000, tokens,
                         usage.get("prompt_tokens") if usage else None, finish_reason, counted_by)


def sse_events(response):
    """The `data:` payloads of a server-sent event stream, one string per event."""
    data: list[str] = []
    while True:
        raw = response.readline()
        if not raw:
            break
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:  # a blank line ends an event
            if data:
                yield "\n".join(data)
                data = []
        elif line.startswith("data:"):
            data.append(line[5:].lstrip(" "))
        # comments (":" keep-alives), "event:", "id:" and "retry:" lines carry no payload we use
    if data:
        yield "\n".join(data)


def run_load(url: str, prompts: list[str], concurrency: int, max_tokens: int, model: str = "default",
             extra_fields: dict | None = None, api_key: str | None = None, timeout_s: float = 600) -> LoadResult:
    """Every prompt once over HTTP, `concurrency` streams at a time; the figures of the module docstring."""
    return run_requests(lambda prompt: stream_chat(url, prompt, max_tokens, model, extra_fields, api_key, timeout_s),
                        prompts, concurrency)


def run_requests(send, prompts: list[str], concurrency: int) -> LoadResult:
    """`send(prompt) -> RequestResult` for every prompt from `concurrency` threads (a closed loop);
    the in-process baseline (benchmarks/server_baseline.py) drives the engine through it too."""
    pending = list(enumerate(prompts))
    results: list[RequestResult | None] = [None] * len(prompts)
    lock = threading.Lock()

    def stream_worker():
        while True:
            with lock:
                if not pending:
                    return
                index, prompt = pending.pop(0)
            results[index] = send(prompt)

    threads = [threading.Thread(target=stream_worker, daemon=True) for _ in range(min(concurrency, len(prompts)))]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return summarize_load(concurrency, [r for r in results if r is not None], time.perf_counter() - start)


def summarize_load(concurrency: int, results: list[RequestResult], wall_s: float) -> LoadResult:
    good = [r for r in results if r.ok]
    tokens = sum(r.output_tokens for r in good)
    ttfts = [r.ttft_ms for r in good if r.ttft_ms is not None]
    tpots = [r.tpot_ms for r in good if r.tpot_ms is not None]
    prompt_tokens = [r.prompt_tokens for r in good if r.prompt_tokens is not None]
    return LoadResult(concurrency, len(results), len(results) - len(good), wall_s, tokens,
                      tokens / wall_s if wall_s > 0 else 0.0, percentile(ttfts, 50), percentile(ttfts, 99),
                      percentile(tpots, 50), statistics.median(prompt_tokens) if prompt_tokens else None, results)
