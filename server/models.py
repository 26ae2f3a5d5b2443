"""Several models behind one server: each loaded on demand into an engine of its own (by default
a supervised engine process, engine/process.py, so a crash takes one model), bounded, evicted
least recently used, never while it answers.

    pool = ModelPool(models_settings, load=lambda m: EngineProcess.load(...), make_serving=...)
    serving = await pool.acquire("chat", deadline)   # loads it if needed; others for it wait
    ... serving.open(...) ...                       # its Run keeps the model busy until closed
    pool.release("chat", keep_alive=None)

Every method runs on the event loop (a load or an unload runs on a thread meanwhile), so the
states need no lock; loads run one at a time (see `_loading`). A model is
  unloaded -> loading -> loaded -> unloading -> unloaded, or loading -> failed (with the reason);
a request for a failed model tries the load again. `busy`: a request holds it (acquired and not
released, or a Run open on its Serving): it is never evicted nor unloaded then. To make room for
a model, the least recently used loaded model that is neither busy nor pinned is unloaded; when
none can be, the request waits for one to become idle until its deadline, then gets a 503 with
Retry-After. Room is counted in models (`models_max`) and in estimated memory (`memory_gb`: the
model's files on disk plus its KV-cache cap), loading and unloading models included.
Idle unload: a model idle for its idle time (the request's `keep_alive` if the last one gave
one, else the model's, else the server's) is unloaded by `sweep()`, run every `tick_s` by the
task `run()` starts; `clock` is injectable so tests move time instead of waiting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..engine.catalog import size_on_disk
from .model_settings import ModelSettings, ModelsSettings, parse_duration
from .protocol import APIError, bad_request, unavailable

log = logging.getLogger("ovchat.server")
ROOM_RETRY_AFTER_S = 5
_UNSET = object()  # release() without a keep_alive: the idle time stays as it was
STATES = ("unloaded", "loading", "loaded", "unloading", "failed")


def model_not_found(name: str, available: list[str]) -> APIError:
    return APIError(404, f"The model {name!r} does not exist here; this server serves {', '.join(map(repr, available))} "
                    "(see GET /v1/models).", param="model", code="model_not_found")


def keep_alive_seconds(value) -> float | None:
    """ollama's keep_alive as seconds the model stays loaded after the request; None: for ever."""
    try:
        return parse_duration(value, "'keep_alive'")
    except Exception as error:
        raise bad_request(str(error), param="keep_alive") from None


@dataclass
class Model:
    """One servable model and where it stands."""
    settings: ModelSettings
    size_bytes: int
    state: str = "unloaded"
    error: str | None = None          # why the last load failed
    serving: object | None = None     # its Serving once loaded
    holders: int = 0                  # requests between acquire and release
    last_used: float = 0.0
    keep_alive_s: float | None = None  # from the last request that gave one
    keep_alive_set: bool = False
    loads: int = 0
    evictions: int = 0
    _loaded: asyncio.Future | None = None

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def busy(self) -> bool:
        serving = self.serving
        return self.holders > 0 or (serving is not None and serving.busy)

    def pid(self) -> int | None:
        engine = getattr(self.serving, "engine", None)
        return getattr(engine, "pid", None)


class ModelPool:
    """The models a server may serve, loaded within its bounds."""

    def __init__(self, settings: ModelsSettings, load: Callable[[ModelSettings], object],
                 make_serving: Callable[[ModelSettings, object], object], clock: Callable[[], float] = time.monotonic,
                 kv_cache_gb: int = 0):
        self.settings = settings
        self._load, self._make_serving, self.clock = load, make_serving, clock
        self.models: dict[str, Model] = {}
        for m in settings.models:
            size = size_on_disk(Path(m.path)) if m.path and Path(m.path).exists() else 0
            kv = m.kv_cache_gb if m.kv_cache_gb is not None else kv_cache_gb
            self.models[m.name] = Model(m, size + int(kv * 2**30))
        self._changed = asyncio.Event()
        # One load at a time: parallel loads of the same files race on OpenVINO's compile cache
        # (a blob written by two processes at once: "cannot set permissions ... .blob", seen with
        # concurrent starts), and on 2 cores they only share the CPU.
        self._loading = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self.closed = False

    # ---- asking for a model -----------------------------------------------------------------

    def get(self, name: str | None) -> Model:
        """The model called `name` (None: the default); a 404 naming the others otherwise."""
        model = self.models.get(self.settings.default_name if name is None else name)
        if model is None:
            raise model_not_found(name, list(self.models))
        return model

    async def acquire(self, name: str | None, deadline: float | None):
        """The model's Serving, loaded; the model stays busy until `release`. Waits (until the
        loop time `deadline`) for its load or for room; raises APIError 404/503."""
        model = self.get(name)
        model.holders += 1
        try:
            while True:
                if self.closed:
                    raise unavailable("The server is shutting down.", code="shutting_down")
                if model.state == "loaded":
                    model.last_used = self.clock()
                    return model.serving
                if model.state == "loading":
                    await self._wait(asyncio.shield(model._loaded), deadline, model)
                    continue
                if model.state in ("unloaded", "failed") and self._has_room(model):
                    self._start_load(model)
                    continue
                if model.state in ("unloaded", "failed") and self._evict_for(model):
                    continue
                await self._wait(self._changed.wait(), deadline, model)
        except BaseException:
            self.release(model.name)
            raise

    def release(self, name: str, keep_alive=_UNSET) -> None:
        """The request that acquired `name` has its Run (or ended): with ollama's keep_alive
        (seconds, None: for ever) the model's idle time from now on."""
        model = self.models[name]
        model.holders -= 1
        if keep_alive is not _UNSET:
            model.keep_alive_s, model.keep_alive_set = keep_alive, True
        self.finished(model)

    def finished(self, model: Model) -> None:
        """A request of `model` ended: it may be idle now (and due for unloading at once)."""
        model.last_used = self.clock()
        if not model.busy:
            if model.keep_alive_set and model.keep_alive_s == 0 and model.state == "loaded" and not model.settings.pinned:
                self._unload(model, "keep_alive 0")
            self._notify()

    async def _wait(self, waitable, deadline: float | None, model: Model) -> None:
        remaining = None if deadline is None else deadline - asyncio.get_running_loop().time()
        try:
            if remaining is not None and remaining <= 0:
                raise asyncio.TimeoutError
            await asyncio.wait_for(waitable, remaining)
        except asyncio.TimeoutError:
            what = "to load" if model.state == "loading" else "for room (every loaded model is answering a request or pinned)"
            raise unavailable(f"The model {model.name!r} waited {what} until the request's deadline; retry shortly.",
                              code="model_unavailable", retry_after_s=ROOM_RETRY_AFTER_S) from None
        except APIError:
            raise
        except Exception as error:  # the load it waited for failed
            raise unavailable(f"The model {model.name!r} failed to load: {error}", code="load_failed",
                              retry_after_s=ROOM_RETRY_AFTER_S) from None

    # ---- room -------------------------------------------------------------------------------

    def _occupying(self) -> list[Model]:
        return [m for m in self.models.values() if m.state in ("loading", "loaded", "unloading")]

    def _has_room(self, model: Model) -> bool:
        occupying = self._occupying()
        if self.settings.models_max and len(occupying) >= self.settings.models_max:
            return False
        budget = self.settings.memory_gb * 2**30
        if budget and occupying and sum(m.size_bytes for m in occupying) + model.size_bytes > budget:
            return False
        return True

    def _evict_for(self, model: Model) -> bool:
        """Unload the least recently used idle, unpinned model; False if none may go, or if one
        is unloading already (its room may be enough: the caller waits and looks again)."""
        if any(m.state == "unloading" for m in self.models.values()):
            return False
        candidates = [m for m in self.models.values()
                      if m.state == "loaded" and not m.busy and not m.settings.pinned and m is not model]
        if not candidates:
            return False
        victim = min(candidates, key=lambda m: m.last_used)
        victim.evictions += 1
        self._unload(victim, f"to make room for {model.name!r}")
        return True

    # ---- loading and unloading (on threads) ------------------------------------------------

    def _start_load(self, model: Model) -> None:
        model.state, model.error = "loading", None
        model._loaded = asyncio.get_running_loop().create_future()
        asyncio.ensure_future(self._load_now(model))

    async def _load_now(self, model: Model) -> None:
        try:
            async with self._loading:
                log.info("ovchat serve: loading %s", model.name)
                engine = await asyncio.to_thread(self._load, model.settings)
            serving = self._make_serving(model.settings, engine)
        except Exception as error:  # an EngineError, or anything a loader raised: the model failed, not the server
            model.state, model.error = "failed", str(error)
            log.error("ovchat serve: could not load %s: %s", model.name, error)
            model._loaded.set_exception(error)
            model._loaded.exception()  # retrieved: nobody may be waiting
        else:
            if self.closed:
                await asyncio.to_thread(serving.close)
                model.state = "unloaded"
            else:
                serving.on_finished = lambda: self.finished(model)
                model.serving, model.state = serving, "loaded"
                model.loads += 1
                model.last_used = self.clock()
                log.info("ovchat serve: %s ready", model.name)
            model._loaded.set_result(None)
        self._notify()

    def _unload(self, model: Model, why: str) -> None:
        serving, model.serving, model.state = model.serving, None, "unloading"
        model.keep_alive_set, model.keep_alive_s = False, None
        log.info("ovchat serve: unloading %s (%s)", model.name, why)
        asyncio.ensure_future(self._close(model, serving))

    async def _close(self, model: Model, serving) -> None:
        try:
            await asyncio.to_thread(serving.close)
        except Exception as error:  # its process may be gone already: it is unloaded either way
            log.warning("ovchat serve: closing %s: %s", model.name, error)
        model.state = "unloaded"
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # ---- admin, idle unload, start and stop -------------------------------------------------

    async def load(self, name: str, deadline: float | None) -> Model:
        """Load `name` now (the admin route); as a request would, evicting if needed."""
        await self.acquire(name, deadline)
        self.release(name)
        return self.get(name)

    async def unload(self, name: str) -> Model:
        """Unload `name` now; a 409 if it is answering requests (they are never cut)."""
        model = self.get(name)
        if model.state == "loading":
            await asyncio.shield(model._loaded)
        if model.state == "loaded":
            if model.busy:
                raise APIError(409, f"The model {name!r} is answering requests; unload it once they end.",
                               code="model_busy", headers={"Retry-After": str(ROOM_RETRY_AFTER_S)})
            self._unload(model, "asked")
        return model

    def idle_limit(self, model: Model) -> float | None:
        """Seconds idle after which `model` is unloaded; None: never."""
        if model.settings.pinned:
            return None
        if model.keep_alive_set:
            return model.keep_alive_s
        if model.settings.idle_set:
            return model.settings.idle_unload_s
        return self.settings.idle_unload_s

    def idle_left(self, model: Model) -> float | None:
        limit = self.idle_limit(model)
        if limit is None or model.state != "loaded" or model.busy:
            return None
        return max(0.0, limit - (self.clock() - model.last_used))

    def sweep(self) -> list[str]:
        """Unload every loaded model idle past its idle time; their names."""
        now, gone = self.clock(), []
        for model in self.models.values():
            limit = self.idle_limit(model)
            if model.state == "loaded" and not model.busy and limit is not None and now - model.last_used >= limit:
                self._unload(model, f"idle for {now - model.last_used:.0f} s")
                gone.append(model.name)
        return gone

    @property
    def tick_s(self) -> float:
        limits = [limit for m in self.models.values() if (limit := self.idle_limit(m)) is not None and limit > 0]
        return min([1.0, *(limit / 4 for limit in limits)])

    def start(self) -> None:
        """Load the pinned and load-at-start models and start the idle sweep (on the loop)."""
        for model in self.models.values():
            if model.settings.pinned or model.settings.load_at_start:
                asyncio.ensure_future(self._load_at_start(model))
        self._task = asyncio.ensure_future(self._sweep_forever())

    async def _load_at_start(self, model: Model) -> None:
        try:
            await self.load(model.name, None)
        except APIError:
            pass  # failed: /v1/models and /health say why

    async def _sweep_forever(self) -> None:
        while not self.closed:
            await asyncio.sleep(self.tick_s)
            self.sweep()

    def servings(self) -> list:
        return [m.serving for m in self.models.values() if m.serving is not None]

    def close(self) -> list:
        """Stop sweeping and taking requests; the Servings to close (a blocking call each)."""
        self.closed = True
        if self._task is not None:
            self._task.cancel()
        servings = self.servings()
        for model in self.models.values():
            model.serving, model.state = None, "unloaded"
        self._notify()
        return servings

    # ---- what is seen from outside ----------------------------------------------------------

    def card(self, model: Model) -> dict:
        """A model in GET /v1/models: OpenAI's fields and ovchat's (state, size, memory, requests)."""
        serving, pid = model.serving, model.pid()
        info = getattr(getattr(serving, "engine", None), "info", None)
        card = {"id": model.name, "object": "model", "created": 0, "owned_by": "ovchat",
                "state": model.state, "size_bytes": model.size_bytes, "pinned": model.settings.pinned,
                "requests_in_flight": serving.in_flight if serving is not None else 0,
                "idle_unload_in_s": self.idle_left(model), "loads": model.loads, "evictions": model.evictions}
        if model.error and model.state == "failed":
            card["error"] = model.error
        if info is not None:
            card.update(context_length=info.context_length, architecture=info.architecture)
        if pid is not None:
            card["memory_bytes"] = _rss_bytes(pid)
        return card


def _rss_bytes(pid: int) -> int | None:
    """A process's resident memory, from /proc (Linux); None elsewhere."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
