"""ovchat on Ray Serve: one OpenAI endpoint over replicas on many machines (the `ray` extra).

    serve run ovchat.server.ray_app:app_builder model=/models/phi3-int4 num_replicas=2
    serve deploy deploy/ray-serve.yaml           (the same, from a config file)
    ovchat serve --ray --replicas 2              (starts or joins Ray, deploys, Ctrl-C drains)

Each replica is one Ray actor holding one engine in batching mode, and serves the very Starlette
app `ovchat serve` serves (server/app.py's create_app), mounted as the deployment's ASGI ingress:
the protocol, validation, errors and streaming are that code, not a copy. Its settings are
`ovchat serve`'s (server/settings.py: `ServerSettings`, with `ray` set), given flat as Serve's
arguments and typed there. What this module adds:

- placement: a replica asks Ray for `num_cpus` CPUs and gives OpenVINO as many inference threads
  (INFERENCE_NUM_THREADS); Ray sets OMP_NUM_THREADS, which OpenVINO's CPU plugin does not read
  (README, "Ray Serve": measured); `max_replicas_per_node` spreads replicas one per node;
- the engine in a child process of the replica (engine/process.py), as `ovchat serve` runs it: a
  pipeline step keeps the GIL, and Ray's own loops in the replica relay every streamed token;
- fewer relayed items: a stream's SSE events are joined, at most one message per
  `stream_coalesce_ms` (server/coalesce.py), since each message costs Ray a relay to the proxy;
- health: `check_health` raises once the engine has stopped, so Ray replaces the replica;
- the replica's name in the `X-Ovchat-Replica` response header, its token counters mirrored into
  Ray's metrics (ray_metrics.py), conversation-affine routing (ray_router.py), and OpenAI-shaped
  errors from Ray's proxy (ray_proxy.py).

Several models (`settings.models`): ray_models.py's replica instead, through Serve's multiplexing.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import replace

from ray import serve
from ray.serve.config import AutoscalingConfig, RequestRouterConfig

from ..engine.errors import OptionsError
from .app import create_app
from .coalesce import CoalesceEventStream
from .ray_replica import DEPLOYMENT, REPLICA_HEADER, ReplicaHeader, replica_name  # noqa: F401 (REPLICA_HEADER: the tests')
from .settings import ServerSettings, from_serve_args

log = logging.getLogger("ovchat.server")
ROUTER = "ovchat.server.ray_router:ConversationRouter"


@serve.deployment(name=DEPLOYMENT, health_check_period_s=2, health_check_timeout_s=10, graceful_shutdown_timeout_s=10)
@serve.ingress()
class OvchatReplica:
    """One engine in batching mode behind server/app.py's routes."""

    def __init__(self, settings: ServerSettings):
        from ..engine import Engine
        from ..engine.process import EngineProcess
        from ..engine.paths import compile_cache_dir

        self.settings = settings
        context = serve.get_replica_context()
        self.name = replica_name()
        # Ray runs this actor on `num_cpus` CPUs but does not pin it; OpenVINO would otherwise start
        # one thread per core of the node, and replicas sharing a node would fight over them.
        load = {"INFERENCE_NUM_THREADS": settings.ray.threads, **settings.engine_arguments()}
        if load.get("cache_dir", True) is True:
            # Replicas sharing a disk (nodes of one machine) would race writing the same compiled
            # blob ("cannot set permissions", seen): one cache folder per replica rank.
            load["cache_dir"] = compile_cache_dir() / f"ray-replica-{context.rank.rank}"
        # A pipeline step keeps the GIL for its whole length (engine/process.py): in the replica's
        # own process, Ray's event loops (the ASGI relay of every streamed token, new requests,
        # the router's queue-length probes) would run only between steps. In a child process they
        # never wait for the engine. A child that dies is not restarted here: the health check
        # fails and Ray replaces the replica, its one supervisor.
        if settings.engine_process:
            engine = EngineProcess(functools.partial(Engine.load, **load), restart=False)
        else:
            engine = Engine.load(**load)
        self.engine = engine
        # Ray's router keeps each replica within max_ongoing_requests; the app's own queue only
        # absorbs its races (a request that slips past a full replica).
        self.server_app = create_app(lambda: engine, replace(settings, max_queue=settings.max_concurrency))
        from .ray_metrics import RayMetricsMirror
        self.metrics = RayMetricsMirror(self.server_app.state.ovchat.metrics, self.name)
        self.metrics.start()  # __init__ runs on the replica's event loop
        log.info("ovchat replica %s: %s ready on %d thread(s)", self.name, engine.info.path, settings.ray.threads)

    def __serve_build_asgi_app__(self):
        coalesced = CoalesceEventStream(self.server_app, self.settings.ray.stream_coalesce_ms / 1000)
        return ReplicaHeader(coalesced, self.name, state=self.server_app.state)

    async def check_health(self) -> None:
        """Raise (Ray then replaces this replica) once the engine no longer answers."""
        state = self.server_app.state.ovchat
        stopped = state.load_error or self.engine.stopped
        if stopped:
            raise RuntimeError(f"ovchat replica {self.name}: {stopped}")

    def stop_engine(self) -> str:
        """Close this replica's engine (an operator's way to retire it; the tests' way to make a
        replica unhealthy): its requests end, its health check fails, Ray starts a new replica."""
        self.engine.close()
        return self.name

    def describe(self) -> dict:
        """This replica's name, and the threads Ray asked for (OMP_NUM_THREADS) against OpenVINO's."""
        return {"replica": self.name, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                "inference_num_threads": self.settings.ray.threads, "model": str(self.engine.info.path)}


def deployment_options(settings: ServerSettings) -> dict:
    """The Serve deployment options the settings ask for (a config file may override them)."""
    from ray.serve.config import BackpressureConfig

    ray_settings = settings.ray
    chosen = dict(
        ray_actor_options={"num_cpus": ray_settings.num_cpus},
        max_ongoing_requests=settings.max_concurrency,
        max_queued_requests=ray_settings.max_queued_requests,
        backpressure_config=BackpressureConfig(status_code=429, retry_after_s=1),
    )
    if ray_settings.max_replicas_per_node:
        chosen["max_replicas_per_node"] = ray_settings.max_replicas_per_node
    if ray_settings.autoscaling:
        chosen["autoscaling_config"] = AutoscalingConfig(
            min_replicas=ray_settings.min_replicas, max_replicas=ray_settings.max_replicas,
            target_ongoing_requests=ray_settings.target_ongoing_requests)
    else:
        chosen["num_replicas"] = ray_settings.num_replicas
    if settings.models is not None:  # Serve's multiplexing routes by model; the conversation among its holders
        chosen["request_router_config"] = RequestRouterConfig(
            request_router_class=ROUTER, request_router_kwargs={"multiplexed": True,
                                                                "affinity": ray_settings.conversation_affinity})
    elif ray_settings.conversation_affinity:
        chosen["request_router_config"] = RequestRouterConfig(request_router_class=ROUTER)
    return chosen


def build(settings: ServerSettings):
    """The Serve application for these settings (their `ray` part set)."""
    if settings.ray is None:
        raise OptionsError("a Ray Serve app needs ServerSettings(ray=RaySettings(...)).")
    if settings.models is not None:  # several models: Serve's multiplexing (ray_models.py)
        from .ray_models import OvchatModelsReplica, check_models
        check_models(settings)
        return OvchatModelsReplica.options(**deployment_options(settings)).bind(settings)
    return OvchatReplica.options(**deployment_options(settings)).bind(settings)


def app_builder(args: dict):
    """`serve run ovchat.server.ray_app:app_builder key=value ...` and config files' import_path:
    the names of ServerSettings' and RaySettings' fields (server/settings.py), typed there."""
    return build(from_serve_args(dict(args or {})))
