"""The server's settings, one frozen dataclass for every way to serve:

    ovchat serve --max-concurrency 8 ...            cli/serve.py builds one from its flags
    create_app(load_engine, ServerSettings(...))     server/app.py reads the HTTP fields
    serve run ovchat.server.ray_app:app_builder max_concurrency=8 num_replicas=2
                                                     `from_serve_args` builds one, `ray` set

Every field has a visible default and is checked on construction (an `OptionsError` naming the
field and its `ovchat serve` flag). The Ray-only fields sit in `RaySettings` (`ray`: None for a
server of one process). Serve hands an app builder strings from `serve run key=value` and typed
values from a config file's `args`; `from_serve_args` gives both the fields' types (a dict as
JSON, a bool as true/false), so no option arrives as the string it was typed as.
This module imports nothing heavier than the standard library: the CLI builds settings before
it loads anything.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Mapping

from ..engine.errors import OptionsError
from .model_settings import ModelSettings, ModelsSettings

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
REASONING_FORMATS = ("separated", "inline")  # as llama.cpp's --reasoning-format deepseek / none
# Engine.load arguments with a setting of their own: engine_options may not repeat them.
OWN_ENGINE_ARGUMENTS = ("model", "device", "batching")


@dataclass(frozen=True)
class RaySettings:
    """How the app spreads over a Ray cluster (server/ray_app.py; docs/ray-serve.md)."""
    num_cpus: float = 1               # per replica; also OpenVINO's INFERENCE_NUM_THREADS
    num_replicas: int | str = 1       # a number, or "auto" (autoscaling between min and max)
    min_replicas: int = 1
    max_replicas: int = 4
    target_ongoing_requests: float = 8  # autoscaling aims at this many requests per replica
    max_replicas_per_node: int | None = None  # 1: one replica per node
    max_queued_requests: int = 64     # requests each Ray proxy holds when every replica is full; more get a 429
    conversation_affinity: bool = True  # turns with the same X-Session-ID go to the same replica
    stream_coalesce_ms: float = 250   # a stream's SSE events reach the proxy at most once per this long, joined
    #                                   (server/coalesce.py: a token waits at most this long); 0: each event at once
    max_num_models_per_replica: int = 3  # several models (ServerSettings.models): Serve's multiplexing keeps at
    #                                   most this many loaded per replica, least recently used evicted (ray_models.py)

    def __post_init__(self):
        _check_types(self)
        _require(self.num_cpus > 0, "num_cpus", "--replica-cpus", "must be > 0")
        _require(self.num_replicas == "auto" or (isinstance(self.num_replicas, int) and self.num_replicas >= 1),
                 "num_replicas", "--replicas", "must be a whole number >= 1 or 'auto'")
        _require(1 <= self.min_replicas <= self.max_replicas, "min_replicas",
                 "--min-replicas", f"must be >= 1 and <= max_replicas ({self.max_replicas})")
        _require(self.target_ongoing_requests > 0, "target_ongoing_requests", None, "must be > 0")
        _require(self.max_replicas_per_node is None or self.max_replicas_per_node >= 1, "max_replicas_per_node",
                 "--replicas-per-node", "must be >= 1 (or None: no limit)")
        _require(self.max_queued_requests >= 0, "max_queued_requests", "--max-queued", "must be >= 0")
        _require(self.stream_coalesce_ms >= 0, "stream_coalesce_ms", "--stream-coalesce-ms", "must be >= 0 (0: no joining)")
        _require(self.max_num_models_per_replica >= 1, "max_num_models_per_replica", "--models-per-replica",
                 "must be >= 1")

    @property
    def threads(self) -> int:
        """OpenVINO inference threads per replica: its CPUs, at least one."""
        return max(1, int(self.num_cpus))

    @property
    def autoscaling(self) -> bool:
        return self.num_replicas == "auto"


@dataclass(frozen=True)
class ServerSettings:
    """What one ovchat server is: the model it loads, the HTTP it answers, its bounds."""
    # The engine (loaded in batching mode)
    model: str | None = None          # exported folder or .gguf; None: the embedded default model
    device: str = "CPU"
    engine_options: dict = field(default_factory=dict)  # more Engine.load arguments: performance_hint,
    #                                   num_streams, cache_dir, warmup, deterministic, OpenVINO properties...
    engine_process: bool = True       # the engine in a supervised child process; False: in this one (--in-process)
    max_concurrency: int = 16         # generations at once (the engine's batch size)
    kv_cache_gb: int = 0              # the KV cache's size; 0: grown as needed
    # HTTP
    host: str = "127.0.0.1"           # the address served: a Host header may name it (guard.py)
    port: int = 8000
    api_key: str | None = None        # None: no check; else every route but /health and / needs it
    served_model_name: str | None = None  # the id clients send as "model"; None: the model folder's name
    max_queue: int = 64               # requests waiting for a slot; more get a 429
    max_body_bytes: int = 1 << 20
    max_tokens: int | None = 2048     # the most tokens one answer may have: larger asks are clamped; None: the context
    request_timeout_s: float | None = 600.0  # a request's deadline from its arrival (serving.py); None: none
    shutdown_grace_s: float = 5.0     # on SIGTERM, in-flight requests get this long, then are cancelled
    reasoning_format: str = "separated"  # a thinking model's reasoning: "separated" (reasoning_content) or "inline"
    allowed_hosts: tuple[str, ...] = ()    # more Host names a keyless server answers (a proxy's)
    allowed_origins: tuple[str, ...] = ()  # web page origins allowed to call the API (CORS)
    log_level: str = "info"
    # The Responses API's memory (server/response_store.py; docs/server.md, "Responses that remember")
    store_responses: bool = True      # keep responses for previous_response_id (OpenAI's default: store true)
    responses_db: str | None = None   # the SQLite file; None: $OVCHAT_CACHE/responses.sqlite
    responses_max_count: int = 10_000  # the oldest beyond this many are pruned on each write
    responses_max_age_days: float = 30  # older ones are gone (a 404), as OpenAI keeps them 30 days
    ray: RaySettings | None = None    # None: one process (uvicorn); set: a Ray Serve app
    models: ModelsSettings | None = None  # several models, loaded on demand (server/models.py); None: `model` alone

    def __post_init__(self):
        for name in ("allowed_hosts", "allowed_origins"):  # a config file's list
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        _check_types(self)
        _require(self.max_concurrency >= 1, "max_concurrency", "--max-concurrency", "must be >= 1")
        _require(self.max_queue >= 0, "max_queue", "--max-queue", "must be >= 0")
        _require(0 <= self.port <= 65535, "port", "--port", "must be in 0..65535")
        _require(self.max_body_bytes >= 1, "max_body_bytes", "--max-body-mb", "must be > 0")
        _require(self.max_tokens is None or self.max_tokens >= 1, "max_tokens", "--max-tokens",
                 "must be >= 1 (None, or 0 on the command line: the room left in the context)")
        _require(self.request_timeout_s is None or self.request_timeout_s > 0, "request_timeout_s",
                 "--request-timeout", "must be > 0 (None, or 0 on the command line: no deadline)")
        _require(self.kv_cache_gb >= 0, "kv_cache_gb", "--kv-cache-gb", "must be >= 0 (0: grown as needed)")
        _require(self.shutdown_grace_s >= 0, "shutdown_grace_s", "--shutdown-grace", "must be >= 0")
        _require(self.reasoning_format in REASONING_FORMATS, "reasoning_format", "--reasoning-format",
                 f"must be one of {', '.join(REASONING_FORMATS)}")
        _require(self.log_level in LOG_LEVELS, "log_level", "--log-level", f"must be one of {', '.join(LOG_LEVELS)}")
        _require(self.responses_max_count >= 1, "responses_max_count", "--responses-max-count", "must be >= 1")
        _require(self.responses_max_age_days > 0, "responses_max_age_days", "--responses-max-age-days", "must be > 0")
        own = sorted(set(self.engine_options) & set(OWN_ENGINE_ARGUMENTS))
        _require(not own, "engine_options", None, f"may not set {', '.join(own)}: give the setting of that name instead")

    def door(self):
        """Who may knock (server/guard.py): this server's names, a proxy's, other pages' origins."""
        from .guard import DoorPolicy
        return DoorPolicy(self.host, self.allowed_hosts, self.allowed_origins, keyed=self.api_key is not None)

    def batch_options(self):
        """The engine's batching mode for these settings (an engine.BatchOptions)."""
        from ..engine import BatchOptions
        return BatchOptions(max_sequences=self.max_concurrency, kv_cache_gb=self.kv_cache_gb)

    def response_store(self):
        """The store of the Responses API's memory (a ResponseStore), or None when storing is off."""
        if not self.store_responses:
            return None
        from ..engine.paths import cache_root
        from .response_store import ResponseStore
        path = self.responses_db or cache_root() / "responses.sqlite"
        return ResponseStore(path, self.responses_max_count, self.responses_max_age_days * 86400)

    def engine_arguments(self) -> dict:
        """Engine.load's (and EngineProcess.load's) keyword arguments."""
        return dict(model=self.model, device=self.device, batching=self.batch_options(), **self.engine_options)

    def model_engine_arguments(self, model: ModelSettings) -> dict:
        """Engine.load's keyword arguments for one model of `models`: its own settings over the server's."""
        from ..engine import BatchOptions
        batching = BatchOptions(max_sequences=self.model_concurrency(model),
                                kv_cache_gb=self.kv_cache_gb if model.kv_cache_gb is None else model.kv_cache_gb)
        return dict(model=model.path, device=model.device, batching=batching,
                    **{**self.engine_options, **model.engine_options})

    def model_concurrency(self, model: ModelSettings) -> int:
        return model.max_concurrency or self.max_concurrency


# Settings of `ovchat serve`'s own process, that Ray decides for a Ray Serve app.
NOT_FOR_RAY = {
    "port": "port: Serve's http_options choose the port of a Ray Serve app.",
    "log_level": "log_level: Ray's logging configuration sets a Ray Serve app's log level.",
    "max_queue": "max_queue: on Ray, requests queue in Ray's proxies: set max_queued_requests.",
    "models": "models: give a Ray Serve app several models with `ovchat serve --ray -m NAME=PATH -m ...` "
              "(Serve's arguments name one model).",
}


def from_serve_args(args: Mapping) -> ServerSettings:
    """The settings of the Ray app from Serve's arguments (`serve run ...:app_builder key=value`,
    a config file's `args`): the names of ServerSettings' and RaySettings' fields, flat; strings
    get their field's type."""
    top = [f.name for f in fields(ServerSettings) if f.name != "ray"]
    ray = [f.name for f in fields(RaySettings)]
    unknown = sorted(set(args) - set(top) - set(ray))
    if unknown:
        raise OptionsError(f"unknown ovchat Ray app argument(s) {', '.join(unknown)}; "
                           f"use these: {', '.join(n for n in [*top, *ray] if n not in NOT_FOR_RAY)}.")
    refused = sorted(set(args) & set(NOT_FOR_RAY))
    if refused:
        raise OptionsError(" ".join(NOT_FOR_RAY[name] for name in refused))
    hints = {**typing.get_type_hints(ServerSettings), **typing.get_type_hints(RaySettings)}
    typed = {name: _parsed(name, value, hints[name]) for name, value in args.items()}
    return ServerSettings(**{k: v for k, v in typed.items() if k in top},
                          ray=RaySettings(**{k: v for k, v in typed.items() if k in ray}))


def _parsed(name: str, value, hint):
    """`value` as the field's type, if it came as text (`serve run key=value`)."""
    if not isinstance(value, str):
        return value
    kinds = _kinds(hint)
    if type(None) in kinds and value.strip().lower() in ("", "none", "null"):
        return None
    for kind in kinds:
        if kind is bool:
            flag = {"true": True, "1": True, "yes": True, "on": True,
                    "false": False, "0": False, "no": False, "off": False}.get(value.strip().lower())
            if flag is not None:
                return flag
        elif kind in (int, float):
            try:
                return kind(value)
            except ValueError:
                continue
        elif kind in (dict, tuple):
            return _parsed_json(name, value, kind)
        elif kind is str:
            return value
    raise OptionsError(f"{name}={value!r} is not {_names(kinds)}; "
                       f"e.g. {name}={_example(kinds)}.")


def _parsed_json(name: str, text: str, kind):
    if kind is tuple and not text.lstrip().startswith("["):
        return tuple(item.strip() for item in text.split(",") if item.strip())  # a,b as on the command line
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise OptionsError(f"{name}: {text!r} is not JSON ({error}); pass e.g. "
                           f"{name}='{_example([kind])}'.") from None


def _example(kinds) -> str:
    examples = {bool: "true", int: "2", float: "1.5", dict: '{"KV_CACHE_PRECISION": "u8"}', tuple: '["a.example"]',
                str: "text"}
    return examples.get(next(k for k in kinds if k is not type(None)), "null")


def _kinds(hint) -> tuple:
    """The plain types a hint allows, in order: `int | None` -> (int, NoneType), `tuple[str, ...]` -> (tuple,)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return tuple(kind for arg in typing.get_args(hint) for kind in _kinds(arg))
    return (typing.get_origin(hint) or hint,)


def _check_types(settings) -> None:
    hints = typing.get_type_hints(type(settings))
    for f in fields(settings):
        value, kinds = getattr(settings, f.name), _kinds(hints[f.name])
        allowed = (*kinds, int) if float in kinds else kinds  # 30 for 30.0
        ok = isinstance(value, allowed) and not (isinstance(value, bool) and bool not in kinds)  # True is no number here
        if ok and isinstance(value, tuple):
            ok = all(isinstance(item, str) for item in value)
        _require(ok, f.name, None, f"must be {_names(kinds)}, not {value!r}")


def _names(kinds) -> str:
    names = {type(None): "None", tuple: "a tuple of str", dict: "a dict"}
    return " or ".join(names.get(kind, kind.__name__) for kind in kinds)


def _require(ok: bool, name: str, flag: str | None, what: str) -> None:
    if not ok:
        raise OptionsError(f"{name}{f' ({flag})' if flag else ''} {what}.", param=name)
