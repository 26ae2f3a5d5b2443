"""A replica's server metrics, mirrored into Ray's metrics so Prometheus sees every replica.

Each replica keeps `ovchat serve`'s own Prometheus registry (metrics.py); its /metrics answers for
that one replica, whichever one the router picks. Ray exports the metrics of every process of a
node at the node's metrics-export port (`ray start --metrics-export-port`, the address Prometheus
scrapes on a Ray cluster), so every `every_s` seconds this copies the registry's counters (as
increments) and gauges into `ray.util.metrics`, tagged with the replica's name. Ray prefixes the
names with `ray_`: ray_ovchat_generation_tokens_total, ray_ovchat_prompt_tokens_total,
ray_ovchat_requests_total{endpoint,status}, ray_ovchat_generations_finished_total{reason},
ray_ovchat_requests_running, ray_ovchat_queue_depth, ray_ovchat_kv_cache_usage_ratio
(each with a `replica` tag). README, "Ray Serve", lists them.
"""

from __future__ import annotations

import asyncio
import logging

from ray.util import metrics as ray_metrics

from .metrics import ServerMetrics

log = logging.getLogger("ovchat.server")
COUNTERS = ("ovchat_generation_tokens", "ovchat_prompt_tokens", "ovchat_requests", "ovchat_generations_finished")
GAUGES = ("ovchat_requests_running", "ovchat_queue_depth", "ovchat_kv_cache_usage_ratio")


class RayMetricsMirror:
    def __init__(self, server_metrics: ServerMetrics, replica: str, every_s: float = 2.0):
        self._registry = server_metrics.registry
        self._replica = replica
        self._every_s = every_s
        self._sent: dict[tuple, float] = {}   # (name, labels) -> the counter value already added
        self._ray: dict[str, object] = {}
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._every_s)
            try:
                # The gauges ask the engine for its stats: off the event loop.
                await asyncio.to_thread(self.copy)
            except RuntimeError:  # "cannot schedule new futures after shutdown": the replica is stopping
                return
            except Exception:  # metrics must never take a replica down
                log.exception("ovchat replica %s: could not export metrics to Ray", self._replica)

    def copy(self) -> None:
        for family in self._registry.collect():
            if family.name in COUNTERS:
                for sample in family.samples:
                    if sample.name.endswith("_total"):
                        self._add(family, sample)
            elif family.name in GAUGES:
                for sample in family.samples:
                    self._metric(family, gauge=True).set(sample.value, tags=self._tags(sample))

    def _add(self, family, sample) -> None:
        key = (family.name, tuple(sorted(sample.labels.items())))
        delta = sample.value - self._sent.get(key, 0.0)
        if delta > 0:
            self._metric(family).inc(delta, tags=self._tags(sample))
            self._sent[key] = sample.value

    def _tags(self, sample) -> dict:
        return {**sample.labels, "replica": self._replica}

    def _metric(self, family, gauge: bool = False):
        metric = self._ray.get(family.name)
        if metric is None:
            labels = sorted({label for sample in family.samples for label in sample.labels})
            kind = ray_metrics.Gauge if gauge else ray_metrics.Counter
            metric = self._ray[family.name] = kind(family.name, description=family.documentation,
                                                   tag_keys=tuple(labels) + ("replica",))
        return metric
