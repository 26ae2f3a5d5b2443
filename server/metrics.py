"""The server's Prometheus metrics, through prometheus_client, in a registry of its own (one per
app, so tests can run several). Gauges that mirror the engine (running, waiting, KV-cache use)
are read when /metrics is scraped; counters and histograms are fed as requests end."""

from __future__ import annotations

from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Seconds. TTFT on 2 cores runs from ~50 ms (a short prompt, idle) to seconds (a long prompt
# behind 15 others); TPOT from ~5 ms (a 135M model alone) to ~0.5 s (Phi-3 shape, 16 streams).
TTFT_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
TPOT_BUCKETS_S = (0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5)


class ServerMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("ovchat_requests", "HTTP requests answered, by endpoint and status code",
                                ["endpoint", "status"], registry=r)
        self.finished = Counter("ovchat_generations_finished", "Generations ended, by finish reason",
                                ["reason"], registry=r)
        self.prompt_tokens = Counter("ovchat_prompt_tokens", "Prompt tokens fed to the model", registry=r)
        self.generated_tokens = Counter("ovchat_generation_tokens", "Tokens generated", registry=r)
        self.ttft = Histogram("ovchat_time_to_first_token_seconds",
                              "Request arrival (after parsing) to its first text, queueing included",
                              buckets=TTFT_BUCKETS_S, registry=r)
        self.tpot = Histogram("ovchat_time_per_output_token_seconds", "Mean time between a generation's tokens",
                              buckets=TPOT_BUCKETS_S, registry=r)
        self.running = Gauge("ovchat_requests_running", "Generations the engine is running now", registry=r)
        self.queue_depth = Gauge("ovchat_queue_depth", "Requests waiting for a slot, in the server and the engine",
                                 registry=r)
        self.kv_cache = Gauge("ovchat_kv_cache_usage_ratio", "Share of the KV cache in use (0..1)", registry=r)
        # A count that only grows, kept by the engine process: a gauge read at each scrape.
        self.engine_restarts = Gauge("ovchat_engine_restarts", "Times the engine process was restarted after it died",
                                     registry=r)

    def watch(self, running: Callable[[], float], waiting: Callable[[], float], kv_cache: Callable[[], float],
              restarts: Callable[[], float]) -> None:
        """Read these at every scrape."""
        self.running.set_function(running)
        self.queue_depth.set_function(waiting)
        self.kv_cache.set_function(kv_cache)
        self.engine_restarts.set_function(restarts)

    def render(self) -> bytes:
        return generate_latest(self.registry)
