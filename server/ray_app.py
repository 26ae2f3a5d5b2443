"""ovchat on Ray Serve: one OpenAI endpoint over replicas on many machines (the `ray` extra).

    serve run ovchat.server.ray_app:app_builder model=/models/phi3-int4 num_replicas=2
    serve deploy deploy/ray-serve.yaml           (the same, from a config file)
    ovchat serve --ray --replicas 2              (starts or joins Ray, deploys, Ctrl-C drains)

Each replica is one Ray actor holding one engine in batching mode, and serves the very Starlette
app `ovchat serve` serves (server/app.py's create_app), mounted as the deployment's ASGI ingress:
the protocol, validation, errors and streaming are that code, not a copy. What this module adds:

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
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import asdict, dataclass, fields

import ray
from ray import serve
from ray.serve.config import AutoscalingConfig, RequestRouterConfig

from ..engine.errors import OptionsError
from .app import ServerConfig, create_app
from .coalesce import CoalesceEventStream

log = logging.getLogger("ovchat.server")
REPLICA_HEADER = "x-ovchat-replica"
DEPLOYMENT = "ovchat"
ROUTER = "ovchat.server.ray_router:ConversationRouter"


@dataclass(frozen=True)
class RayAppOptions:
    """What `app_builder` takes (from `serve run ... key=value`, a config file's `args`, or the CLI)."""
    model: str | None = None          # exported folder or .gguf; None: the embedded default model
    device: str = "CPU"
    engine_options: dict | None = None  # more Engine.load arguments: performance_hint, OpenVINO properties...
    served_model_name: str | None = None
    api_key: str | None = None
    num_cpus: float = 1               # per replica; also OpenVINO's INFERENCE_NUM_THREADS
    num_replicas: int | str = 1       # a number, or "auto" (autoscaling between min and max)
    min_replicas: int = 1
    max_replicas: int = 4
    target_ongoing_requests: float = 8  # autoscaling aims at this many requests per replica
    max_replicas_per_node: int | None = None  # 1: one replica per node
    max_concurrency: int = 16         # generations a replica runs together (its engine's batch)
    stream_coalesce_ms: float = 250   # a stream's SSE events reach the proxy at most once per this long, joined
    #                                   (server/coalesce.py: a token waits at most this long); 0: each event at once
    engine_process: bool = True       # the engine in a child process of the replica, as `ovchat serve`; False: in the replica's
    max_queued_requests: int = 64     # requests each proxy holds for the deployment; more get a 429
    conversation_affinity: bool = True  # turns with the same X-Session-ID go to the same replica
    shutdown_grace_s: float = 5.0
    kv_cache_gb: int = 0              # each replica's KV cache; 0: grown as needed
    server: dict | None = None        # more ServerConfig fields (server/app.py): max_tokens, request_timeout_s,
    #                                   bind_host, allowed_hosts, allowed_origins, max_body_bytes

    @classmethod
    def from_args(cls, args: dict) -> "RayAppOptions":
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(args) - set(known))
        if unknown:
            raise OptionsError(f"unknown ovchat Ray app argument(s) {', '.join(unknown)}; "
                               f"use these: {', '.join(known)}.")
        return cls(**{key: _typed(known[key], value) for key, value in args.items()})

    @property
    def threads(self) -> int:
        return max(1, int(self.num_cpus))

    @property
    def autoscaling(self) -> bool:
        return self.num_replicas == "auto"


def _typed(field, value):
    """`serve run a:b key=value` passes strings: give them the field's type."""
    if not isinstance(value, str):
        return value
    if value in ("", "None", "null") and "None" in field.type:
        return None
    if field.name == "num_replicas":
        return value if value == "auto" else int(value)
    kind = field.type.split(" |")[0]
    convert = {"bool": lambda text: text.lower() in ("1", "true", "yes", "on"), "int": int, "float": float}
    return convert.get(kind, str)(value)


@serve.deployment(name=DEPLOYMENT, health_check_period_s=2, health_check_timeout_s=10, graceful_shutdown_timeout_s=10)
@serve.ingress()
class OvchatReplica:
    """One engine in batching mode behind server/app.py's routes."""

    def __init__(self, options: dict):
        from ..engine import BatchOptions, Engine
        from ..engine.process import EngineProcess
        from ..engine.paths import compile_cache_dir

        self.options = RayAppOptions(**options)
        context = serve.get_replica_context()
        node = ray.get_runtime_context().get_node_id()
        self.name = f"{context.replica_id.unique_id}@{os.uname().nodename}/{node[:12]}"  # replica@host/Ray node
        # Ray runs this actor on `num_cpus` CPUs but does not pin it; OpenVINO would otherwise start
        # one thread per core of the node, and replicas sharing a node would fight over them.
        load = {"INFERENCE_NUM_THREADS": self.options.threads, **(self.options.engine_options or {})}
        if load.get("cache_dir", True) is True:
            # Replicas sharing a disk (nodes of one machine) would race writing the same compiled
            # blob ("cannot set permissions", seen): one cache folder per replica rank.
            load["cache_dir"] = compile_cache_dir() / f"ray-replica-{context.rank.rank}"
        batching = BatchOptions(max_sequences=self.options.max_concurrency, kv_cache_gb=self.options.kv_cache_gb)
        # A pipeline step keeps the GIL for its whole length (engine/process.py): in the replica's
        # own process, Ray's event loops (the ASGI relay of every streamed token, new requests,
        # the router's queue-length probes) would run only between steps. In a child process they
        # never wait for the engine. A child that dies is not restarted here: the health check
        # fails and Ray replaces the replica, its one supervisor.
        if self.options.engine_process:
            engine = EngineProcess(functools.partial(Engine.load, self.options.model, device=self.options.device,
                                                     batching=batching, **load), restart=False)
        else:
            engine = Engine.load(self.options.model, device=self.options.device, batching=batching, **load)
        self.engine = engine
        server = {key: tuple(value) if isinstance(value, list) else value
                  for key, value in (self.options.server or {}).items()}
        config = ServerConfig(**{**server, "api_key": self.options.api_key, "model_name": self.options.served_model_name,
                                 "max_concurrency": self.options.max_concurrency,
                                 # Ray's router keeps each replica within max_ongoing_requests; this
                                 # queue only absorbs its races (a request that slips past a full replica).
                                 "max_queue": self.options.max_concurrency,
                                 "shutdown_grace_s": self.options.shutdown_grace_s})
        self.server_app = create_app(lambda: engine, config)
        from .ray_metrics import RayMetricsMirror
        self.metrics = RayMetricsMirror(self.server_app.state.ovchat.metrics, self.name)
        self.metrics.start()  # __init__ runs on the replica's event loop
        log.info("ovchat replica %s: %s ready on %d thread(s)", self.name, engine.info.path, self.options.threads)

    def __serve_build_asgi_app__(self):
        coalesced = CoalesceEventStream(self.server_app, self.options.stream_coalesce_ms / 1000)
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
                "inference_num_threads": self.options.threads, "model": str(self.engine.info.path)}


class ReplicaHeader:
    """ASGI middleware: every response names the replica that served it."""

    def __init__(self, app, name: str, state=None):
        self.app, self.header = app, (REPLICA_HEADER.encode(), name.encode())
        self.state = app.state if state is None else state  # Ray's ingress wrapper and the tests read the Starlette app's state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def named(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), self.header]}
            await send(message)

        await self.app(scope, receive, named)


def deployment_options(options: RayAppOptions) -> dict:
    """The Serve deployment options the app's arguments ask for (a config file may override them)."""
    from ray.serve.config import BackpressureConfig

    chosen = dict(
        ray_actor_options={"num_cpus": options.num_cpus},
        max_ongoing_requests=options.max_concurrency,
        max_queued_requests=options.max_queued_requests,
        backpressure_config=BackpressureConfig(status_code=429, retry_after_s=1),
    )
    if options.max_replicas_per_node:
        chosen["max_replicas_per_node"] = options.max_replicas_per_node
    if options.autoscaling:
        chosen["autoscaling_config"] = AutoscalingConfig(
            min_replicas=options.min_replicas, max_replicas=options.max_replicas,
            target_ongoing_requests=options.target_ongoing_requests)
    else:
        chosen["num_replicas"] = int(options.num_replicas)
    if options.conversation_affinity:
        chosen["request_router_config"] = RequestRouterConfig(request_router_class=ROUTER)
    return chosen


def build(options: RayAppOptions):
    """The Serve application for these options."""
    return OvchatReplica.options(**deployment_options(options)).bind(asdict(options))


def app_builder(args: dict):
    """`serve run ovchat.server.ray_app:app_builder key=value ...` and config files' import_path."""
    return build(RayAppOptions.from_args(dict(args or {})))
