"""The server's Prometheus metrics, through prometheus_client, in a registry of its own (one per
app, so tests can run several). Gauges that mirror the engine (running, waiting, KV-cache use)
are read when /metrics is scraped; counters and histograms are fed as requests end.

A server of several models (server/models.py) makes `ServerMetrics(per_model=True)`: every
family but the requests counter gets a `model` label, each model's Serving feeds its own view
(`for_model(name)`), and the pool's gauges say which models are loaded, their loads and evictions."""

from __future__ import annotations

from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Seconds. TTFT on 2 cores runs from ~50 ms (a short prompt, idle) to seconds (a long prompt
# behind 15 others); TPOT from ~5 ms (a 135M model alone) to ~0.5 s (Phi-3 shape, 16 streams).
TTFT_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
TPOT_BUCKETS_S = (0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5)


class ServerMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, per_model: bool = False):
        self.registry = CollectorRegistry()
        r = self.registry
        m = ["model"] if per_model else []
        self.requests = Counter("ovchat_requests", "HTTP requests answered, by endpoint and status code",
                                ["endpoint", "status"], registry=r)
        self.finished = Counter("ovchat_generations_finished", "Generations ended, by finish reason",
                                ["reason", *m], registry=r)
        self.prompt_tokens = Counter("ovchat_prompt_tokens", "Prompt tokens fed to the model", m, registry=r)
        self.generated_tokens = Counter("ovchat_generation_tokens", "Tokens generated", m, registry=r)
        self.ttft = Histogram("ovchat_time_to_first_token_seconds",
                              "Request arrival (after parsing) to its first text, queueing included",
                              m, buckets=TTFT_BUCKETS_S, registry=r)
        self.tpot = Histogram("ovchat_time_per_output_token_seconds", "Mean time between a generation's tokens",
                              m, buckets=TPOT_BUCKETS_S, registry=r)
        self.running = Gauge("ovchat_requests_running", "Generations the engine is running now", m, registry=r)
        self.queue_depth = Gauge("ovchat_queue_depth", "Requests waiting for a slot, in the server and the engine",
                                 m, registry=r)
        self.kv_cache = Gauge("ovchat_kv_cache_usage_ratio", "Share of the KV cache in use (0..1)", m, registry=r)
        # A count that only grows, kept by the engine process: a gauge read at each scrape.
        self.engine_restarts = Gauge("ovchat_engine_restarts", "Times the engine process was restarted after it died",
                                     m, registry=r)
        if per_model:
            self.model_loaded = Gauge("ovchat_model_loaded", "1 while the model is loaded, else 0", m, registry=r)
            self.model_loads = Gauge("ovchat_model_loads", "Times the model was loaded", m, registry=r)
            self.model_evictions = Gauge("ovchat_model_evictions", "Times the model was unloaded to make room", m,
                                         registry=r)

    def for_model(self, name: str) -> "ServerMetrics":
        """The view one model's Serving feeds: the same attributes, each bound to model=name."""
        view = _ModelView()
        for attribute in ("finished", "prompt_tokens", "generated_tokens", "ttft", "tpot", "running", "queue_depth",
                          "kv_cache", "engine_restarts"):
            setattr(view, attribute, _Bound(getattr(self, attribute), name))
        return view

    def watch(self, running: Callable[[], float], waiting: Callable[[], float], kv_cache: Callable[[], float],
              restarts: Callable[[], float]) -> None:
        """Read these at every scrape."""
        self.running.set_function(running)
        self.queue_depth.set_function(waiting)
        self.kv_cache.set_function(kv_cache)
        self.engine_restarts.set_function(restarts)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Bound:
    """A labelled family seen with its last label (model) filled in: `.labels(reason)` and
    `.inc()` / `.observe()` / `.set_function()` as on the unlabelled family."""

    def __init__(self, family, model: str):
        self._family, self._model = family, model

    def labels(self, *values):
        return self._family.labels(*values, self._model)

    def __getattr__(self, name):
        return getattr(self._family.labels(self._model), name)


class _ModelView:
    watch = ServerMetrics.watch
