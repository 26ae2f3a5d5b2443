"""`ovchat serve`'s flags for several models, read into a ModelsSettings (server/model_settings.py):

    ovchat serve -m chat=~/models/phi3-int4 -m fast=smollm2-135m-instruct-int4 --models-max 1
    ovchat serve --models-dir                     every model in ovchat's cache, loaded on demand
    ovchat serve --config models.toml --idle-unload 10m

One `-m` (or none) and no flag of this group serves one model as before (`models_settings` gives
None); with one of them, even one model is served by the pool (e.g. `-m x --idle-unload 5m`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..engine.errors import OptionsError


def add_flags(p) -> None:
    g = p.add_argument_group("several models (docs/server.md, 'Several models')")
    g.add_argument("--models-dir", nargs="?", const="", metavar="DIR",
                   help="serve every model in DIR (without DIR: ovchat's cache of exported models, `ovchat list`), "
                        "each loaded on its first request")
    g.add_argument("--config", metavar="FILE",
                   help="a TOML settings file: [server] models_max, memory_gb, idle_unload, default; "
                        "[models.NAME] path, device, properties, kv_cache_gb, draft_model, prompt_lookup, "
                        "deterministic, max_concurrency, pinned, idle_unload, load_at_start")
    g.add_argument("--models-max", type=int, metavar="N",
                   help="at most N models loaded; the least recently used idle one is unloaded to make room "
                        "(default: 4; 0: no limit)")
    g.add_argument("--models-memory-gb", type=float, metavar="GB",
                   help="at most this much estimated memory for the loaded models (their files plus KV-cache cap; "
                        "default: 0, no limit)")
    g.add_argument("--idle-unload", metavar="DURATION",
                   help="unload a model idle this long (seconds, or e.g. 5m, 1h; default: -1, never)")
    g.add_argument("--pin", action="append", default=[], metavar="NAME",
                   help="never evict nor idle-unload this model; it loads at start (repeatable)")
    g.add_argument("--default-model", metavar="NAME", help="the model of requests naming none (default: the first)")


def models_settings(args, device: str):
    """The ModelsSettings the flags ask for, or None to serve one model as before."""
    from ..engine.catalog import list_models, models_dir
    from ..engine.paths import default_model_dir
    from ..server.model_settings import ModelSettings, ModelsSettings, parse_duration, read_settings_file

    given = args.model or []
    pool_flags = (args.models_max, args.models_memory_gb, args.idle_unload, args.default_model, args.pin or None)
    if len(given) <= 1 and args.models_dir is None and not args.config and all(f is None for f in pool_flags):
        return None  # one model, served as before
    if not given and args.models_dir is None and not args.config:
        given = [str(default_model_dir())]  # e.g. `ovchat serve --idle-unload 5m`: the default model
    models = [ModelSettings(*_named(item), device=device) for item in given]
    server = {}
    if args.config:
        server, from_file = read_settings_file(args.config)
        models += from_file
    if args.models_dir is not None:
        names = {m.name for m in models}
        folder = Path(args.models_dir).expanduser() if args.models_dir else models_dir()
        if not folder.is_dir():
            raise OptionsError(f"--models-dir {folder}: no such folder.")
        models += [ModelSettings(e.name, str(e.path), device=device) for e in list_models(folder) if e.name not in names]
    unknown = sorted(set(args.pin) - {m.name for m in models})
    if unknown:
        raise OptionsError(f"--pin {', '.join(unknown)}: no such model; these are served: "
                           f"{', '.join(m.name for m in models)}.")
    models = [dataclasses.replace(m, pinned=True, load_at_start=True) if m.name in args.pin else m for m in models]
    idle = args.idle_unload if args.idle_unload is not None else server.get("idle_unload", -1)
    return ModelsSettings(
        tuple(models), default=args.default_model or server.get("default"),
        models_max=args.models_max if args.models_max is not None else int(server.get("models_max", 4)),
        memory_gb=args.models_memory_gb if args.models_memory_gb is not None else float(server.get("memory_gb", 0)),
        idle_unload_s=parse_duration(idle, "--idle-unload"))


def _named(item: str) -> tuple[str, str | None]:
    """(name, path) of a -m value: NAME=PATH, a path (named after its folder or .gguf file), or
    the name of a model in ovchat's cache."""
    from ..engine.catalog import find_model

    name, sep, path = item.partition("=")
    if sep and name and "/" not in name and not Path(item).expanduser().exists():
        return name, str(Path(path).expanduser())
    candidate = Path(item).expanduser()
    if candidate.exists():
        return (candidate.stem if candidate.suffix.lower() == ".gguf" else candidate.name), str(candidate)
    if "/" not in item:
        entry = find_model(item)  # a name in the cache; raises naming the ones there
        return entry.name, str(entry.path)
    return candidate.name, str(candidate)  # the load says what is missing
