"""What a server of several models serves: each model's name, files and engine options
(`ModelSettings`), and the pool's bounds (`ModelsSettings`), from `ovchat serve`'s flags or a
TOML settings file (the standard library's tomllib):

    [server]                      # all optional
    models_max = 2                # at most 2 loaded; 0: no limit
    memory_gb = 6                 # their estimated memory at most 6 GB; 0: no limit
    idle_unload = "10m"           # a model idle this long is unloaded (-1: never)
    default = "chat"              # the model of a request that names none

    [models.chat]
    path = "~/.cache/ovchat/models/phi3-int4"
    device = "CPU"
    properties = { KV_CACHE_PRECISION = "u8" }
    kv_cache_gb = 2
    draft_model = "~/.cache/ovchat/models/smollm2-135m-instruct-int4"   # or prompt_lookup = true
    deterministic = false
    max_concurrency = 8
    pinned = true                 # never evicted nor idle-unloaded; loaded at start
    idle_unload = "5m"
    load_at_start = true

Durations are seconds (a number) or text such as "30s", "5m", "1h", "1h30m"; -1 means never,
0 means at once (ollama's `keep_alive` reads the same way). Standard library only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..engine.errors import OptionsError

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
# Keys of a [models.NAME] table that are Engine.load arguments as they are.
_ENGINE_KEYS = ("draft_model", "prompt_lookup", "deterministic", "performance_hint", "num_streams", "cache_dir",
                "warmup")


def parse_duration(value, what: str) -> float | None:
    """Seconds for a duration (a number of seconds, or "5m", "1h30m", "250ms"); None for "never"
    (any negative value, as ollama's keep_alive -1)."""
    if isinstance(value, bool):
        raise OptionsError(f"{what} must be a duration (seconds, or text such as '5m'), not {value!r}.")
    if isinstance(value, (int, float)):
        return None if value < 0 else float(value)
    text = str(value).strip().lower()
    try:
        number = float(text)
        return None if number < 0 else number
    except ValueError:
        pass
    if text.startswith("-"):
        return None
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise OptionsError(f"{what} {value!r} is not a duration; write seconds (300) or e.g. '5m', '1h30m', -1 for never.")
    return sum(float(number) * _UNITS[unit] for number, unit in parts)


@dataclass(frozen=True)
class ModelSettings:
    """One servable model: its API name, where its files are, how its engine is loaded."""
    name: str
    path: str | None                     # exported folder or .gguf; None: the embedded default model
    device: str = "CPU"
    engine_options: dict = field(default_factory=dict)  # more Engine.load arguments (properties, draft...)
    max_concurrency: int | None = None   # None: the server's --max-concurrency
    kv_cache_gb: int | None = None       # None: the server's --kv-cache-gb
    pinned: bool = False                 # never evicted nor unloaded when idle; loaded at start
    idle_unload_s: float | None = None   # None: the server's default
    idle_set: bool = False               # idle_unload_s was given (None then means never)
    load_at_start: bool = False

    def __post_init__(self):
        if not self.name or self.name != self.name.strip() or self.name.endswith(("/load", "/unload")):
            raise OptionsError(f"model name {self.name!r} is not usable; pick a plain name.")
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise OptionsError(f"models.{self.name}.max_concurrency must be >= 1.")
        if self.kv_cache_gb is not None and self.kv_cache_gb < 0:
            raise OptionsError(f"models.{self.name}.kv_cache_gb must be >= 0 (0: grown as needed).")


@dataclass(frozen=True)
class ModelsSettings:
    """The pool's models and bounds (server/models.py)."""
    models: tuple[ModelSettings, ...]
    default: str | None = None           # a request naming no model gets this one (None: the first)
    models_max: int = 0                  # at most this many loaded (loading included); 0: no limit
    memory_gb: float = 0                 # their estimated memory (weights on disk + KV cache) at most; 0: no limit
    idle_unload_s: float | None = None   # a model idle this long is unloaded; None: never

    def __post_init__(self):
        if not self.models:
            raise OptionsError("no models to serve: pass -m, --models-dir or --config with a [models.NAME] table.")
        names = [m.name for m in self.models]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise OptionsError(f"model name(s) {', '.join(twice)} given twice; name each model once (-m NAME=PATH).")
        if self.default is not None and self.default not in names:
            raise OptionsError(f"the default model {self.default!r} is not among the models ({', '.join(names)}).")
        if self.models_max < 0:
            raise OptionsError("models_max (--models-max) must be >= 0 (0: no limit).")
        if self.memory_gb < 0:
            raise OptionsError("memory_gb (--models-memory-gb) must be >= 0 (0: no limit).")
        pinned = sum(m.pinned for m in self.models)
        if self.models_max and pinned > self.models_max:
            raise OptionsError(f"{pinned} models are pinned but at most {self.models_max} may be loaded; "
                               "raise --models-max or pin fewer.")

    @property
    def default_name(self) -> str:
        return self.default or self.models[0].name

    def get(self, name: str) -> ModelSettings | None:
        return next((m for m in self.models if m.name == name), None)


def model_from_table(name: str, table: dict, base: Path | None = None) -> ModelSettings:
    """A [models.NAME] table of the settings file as a ModelSettings; unknown keys are an error."""
    known = {"path", "device", "properties", "kv_cache_gb", "max_concurrency", "pinned", "idle_unload",
             "load_at_start", *_ENGINE_KEYS}
    unknown = sorted(set(table) - known)
    if unknown:
        raise OptionsError(f"models.{name}: unknown key(s) {', '.join(unknown)}; use {', '.join(sorted(known))}.")
    path = table.get("path")
    if path is not None:
        path = str(Path(path).expanduser() if Path(path).expanduser().is_absolute() or base is None
                   else (base / path))
    properties = table.get("properties", {})
    if not isinstance(properties, dict):
        raise OptionsError(f"models.{name}.properties must be a table, e.g. {{ KV_CACHE_PRECISION = \"u8\" }}.")
    options = {**{str(k): v for k, v in properties.items()}, **{k: table[k] for k in _ENGINE_KEYS if k in table}}
    if "draft_model" in options:
        options["draft_model"] = str(Path(options["draft_model"]).expanduser())
    pinned = bool(table.get("pinned", False))
    idle_set = "idle_unload" in table
    return ModelSettings(
        name=name, path=path, device=str(table.get("device", "CPU")), engine_options=options,
        max_concurrency=table.get("max_concurrency"), kv_cache_gb=table.get("kv_cache_gb"), pinned=pinned,
        idle_unload_s=parse_duration(table["idle_unload"], f"models.{name}.idle_unload") if idle_set else None,
        idle_set=idle_set, load_at_start=bool(table.get("load_at_start", pinned)))


def read_settings_file(path: str | Path) -> tuple[dict, list[ModelSettings]]:
    """The [server] table (its keys as given) and the models of a TOML settings file."""
    import tomllib

    path = Path(path).expanduser()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise OptionsError(f"--config {path}: cannot read it ({error.strerror}).") from None
    except tomllib.TOMLDecodeError as error:
        raise OptionsError(f"--config {path}: not valid TOML ({error}).") from None
    unknown = sorted(set(data) - {"server", "models"})
    if unknown:
        raise OptionsError(f"--config {path}: unknown table(s) {', '.join(unknown)}; use [server] and [models.NAME].")
    server = data.get("server", {})
    known = {"models_max", "memory_gb", "idle_unload", "default"}
    if set(server) - known:
        raise OptionsError(f"--config {path}: unknown [server] key(s) {', '.join(sorted(set(server) - known))}; "
                           f"use {', '.join(sorted(known))}.")
    models = [model_from_table(name, table, base=path.parent) for name, table in data.get("models", {}).items()]
    return server, models
