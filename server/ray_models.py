"""Several models on Ray Serve through Serve's model multiplexing: `ovchat serve --ray -m a=PATH
-m b=PATH --models-per-replica N`.

Every replica serves server/app.py's app over a pool of the models (server/models.py: each model
in an engine process of its own, loaded on demand, never unloaded while it answers). Which models
a replica holds is Serve's multiplexing: each request's model goes through the replica's
`@serve.multiplexed(max_num_models_per_replica=N)` function, which Serve wraps in its per-replica
LRU cache and reports to the routers, so a request goes to a replica that already holds its model
(else to the one holding the fewest). Its model is the `serve_multiplexed_model_id` header
(`serve.get_multiplexed_model_id()`), which Ray's proxies set from the body's `model`
(ray_proxy.py), or else the body's `model` read here.

When Serve's LRU evicts a model it calls the held object's `__del__`: the pool unloads that model
at once if idle, else when its last request ends (a stream in flight is never cut); the pool
itself is bounded at N too, so a new model waits for that room (until the request's deadline).
A replica's answers name it (`X-Ovchat-Replica`), the models it has loaded
(`X-Ovchat-Replica-Models`) and the engine process that answered (`X-Ovchat-Engine-Pid`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import replace

from ray import serve

from ..engine.errors import OptionsError
from .app import create_app
from .coalesce import CoalesceEventStream
from .models import ModelPool
from .ray_replica import DEPLOYMENT, ReplicaHeader, replica_name
from .settings import ServerSettings

log = logging.getLogger("ovchat.server")
MODELS_HEADER = "x-ovchat-replica-models"
PID_HEADER = "x-ovchat-engine-pid"


class Held:
    """What Serve's multiplexing caches for one model on this replica. Serve calls `__del__` when
    its LRU evicts it (on a thread), the garbage collector maybe later: the first call counts."""

    def __init__(self, pool: "ReplicaPool", name: str):
        self.pool, self.name, self.loop, self.done = pool, name, asyncio.get_running_loop(), False

    def __del__(self):
        if not self.done:
            self.done = True
            try:
                self.loop.call_soon_threadsafe(self.pool.retire, self.name)
            except RuntimeError:  # the loop is closed: the replica is stopping, nothing to unload
                pass


class ReplicaPool(ModelPool):
    """A replica's models: a request's model first goes through Serve's multiplexed function."""

    def __init__(self, *args, multiplexed, timeout_s: float | None, **kwargs):
        super().__init__(*args, **kwargs)
        self.multiplexed, self.timeout_s = multiplexed, timeout_s

    async def acquire(self, name: str | None, deadline: float | None):
        model = self.get(name)  # an unknown model is a 404 before Serve hears of it
        await self.multiplexed(model.name)  # a miss may evict Serve's least recently used (retire)
        return await super().acquire(model.name, deadline)

    async def hold(self, name: str) -> Held:
        """Serve's load function: the model loaded in this pool (or waiting for room)."""
        model = self.get(name)
        model.keep_alive_set, model.keep_alive_s = False, None  # held again: not retiring any more
        deadline = None if self.timeout_s is None else asyncio.get_running_loop().time() + self.timeout_s
        await ModelPool.acquire(self, name, deadline)
        self.release(name)
        return Held(self, name)

    def retire(self, name: str) -> None:
        """Serve's LRU evicted `name`: unload it now if idle, else when its last request ends."""
        model = self.models.get(name)
        if model is None or model.state != "loaded" or model.settings.pinned:
            return
        if model.busy:
            model.keep_alive_set, model.keep_alive_s = True, 0.0  # release() unloads it (keep_alive 0)
        else:
            self._unload(model, "evicted by Serve's multiplexing (least recently used)")
            self._notify()

    def loaded(self) -> list[str]:
        return [m.name for m in self.models.values() if m.state in ("loading", "loaded")]


def load_model(settings: ServerSettings, rank: int, model):
    """One model's engine in this replica, with the replica's threads and compile-cache folder."""
    from ..engine import Engine
    from ..engine.paths import compile_cache_dir
    from ..engine.process import EngineProcess

    load = {"INFERENCE_NUM_THREADS": settings.ray.threads, **settings.model_engine_arguments(model)}
    if load.get("cache_dir", True) is True:  # replicas sharing a disk: one folder per rank (ray_app.py)
        load["cache_dir"] = compile_cache_dir() / f"ray-replica-{rank}"
    # Restarted after a crash, as `ovchat serve` does: one model's crash costs only its requests.
    return EngineProcess.load(**load) if settings.engine_process else Engine.load(**load)


def check_models(settings: ServerSettings) -> None:
    pinned = [m.name for m in settings.models.models if m.pinned or m.load_at_start]
    if pinned:
        raise OptionsError(f"pinned or load-at-start models ({', '.join(pinned)}) are not for --ray: Serve's "
                           "multiplexing loads a model where it is asked for and evicts the least recently used.")


@serve.deployment(name=DEPLOYMENT, health_check_period_s=2, health_check_timeout_s=10, graceful_shutdown_timeout_s=10)
@serve.ingress()
class OvchatModelsReplica:
    """One replica: server/app.py's app over a ReplicaPool, Serve's multiplexing choosing its models."""

    def __init__(self, settings: ServerSettings):
        context = serve.get_replica_context()
        self.name, self.settings = replica_name(), settings
        per_replica = settings.ray.max_num_models_per_replica

        async def load_for_serve(model_id: str) -> Held:
            return await self.pool.hold(model_id)

        # Built here, not as a decorated method: N is a setting. Serve keeps its LRU cache on it.
        self.get_model = serve.multiplexed(max_num_models_per_replica=per_replica)(load_for_serve)
        models = replace(settings.models, models_max=per_replica)
        pool_class = functools.partial(ReplicaPool, multiplexed=self.get_model, timeout_s=settings.request_timeout_s)
        self.server_app = create_app(functools.partial(load_model, settings, context.rank.rank),
                                     replace(settings, models=models, max_queue=settings.max_concurrency),
                                     pool_class=pool_class)
        log.info("ovchat replica %s: %s, at most %d loaded", self.name,
                 ", ".join(m.name for m in models.models), per_replica)

    @property
    def pool(self) -> ReplicaPool:
        return self.server_app.state.ovchat.pool  # made by the app's lifespan, on this replica's loop

    def __serve_build_asgi_app__(self):
        coalesced = CoalesceEventStream(self.server_app, self.settings.ray.stream_coalesce_ms / 1000)
        return ReplicaHeader(ModelsHeader(coalesced, lambda: self.pool), self.name, state=self.server_app.state)

    async def check_health(self) -> None:
        """Healthy while the app runs: a model's engine that dies is restarted by its EngineProcess."""

    def describe(self) -> dict:
        pool = self.pool
        return {"replica": self.name, "loaded": pool.loaded() if pool else [],
                "pids": {m.name: m.pid() for m in pool.models.values()} if pool else {}}


class ModelsHeader:
    """ASGI middleware: the models this replica has loaded, and the engine process of the
    request's model (its multiplexed model id), in the response headers."""

    def __init__(self, app, pool):
        self.app, self.pool = app, pool
        self.state = getattr(app, "state", None)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        wanted = serve.get_multiplexed_model_id()

        async def named(message):
            pool = self.pool()
            if message["type"] == "http.response.start" and pool is not None:
                extra = [(MODELS_HEADER.encode(), ",".join(pool.loaded()).encode())]
                model = pool.models.get(wanted)
                if model is not None and model.pid() is not None:
                    extra.append((PID_HEADER.encode(), str(model.pid()).encode()))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, named)

