"""Named real models (`ovchat export NAME`'s registry, tools/named_models.py) for `ovchat bench`.

    <cache>/models/<name>/    the model `python -m ovchat export <name>` writes (its recipe, its
                              fidelity check), where `-m <name>` finds it too: exported on first use
    <cache>/sources/<file>    the registry's GGUF that export read: what llama.cpp runs

so ovchat and llama.cpp measure the same file. `<cache>` is `engine.cache_root()` ($OVCHAT_CACHE or
~/.cache/ovchat). The export runs in a child process (torch and optimum stay out of the bench's
own memory), once, under the same kind of lock as the Phi-3-shaped build; `ovchat export` writes
its folder atomically. A folder there that is not a finished export of the registry's file (an
interrupted one, another version's) is exported again.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from ..engine import cache_root
from ..tools.export import is_valid_export
from ..tools.named_models import NAMED, fetch, gguf_path
from .backends import ModelFiles
from .child import PACKAGE_PARENT
from .phi3_shaped import build_lock


def ir_dir(name: str) -> Path:
    return cache_root() / "models" / name  # where `ovchat export NAME` writes without OUT (tools/export_cli.py)


def _exported(name: str) -> bool:
    return is_valid_export(ir_dir(name), NAMED[name].sha256)


def ensure_ir(name: str, log=lambda m: print(m, file=sys.stderr, flush=True)) -> Path:
    """The exported folder of named model `name`, exporting it (once, under the lock) if absent."""
    if _exported(name):
        return ir_dir(name)
    with build_lock(name):
        if _exported(name):
            return ir_dir(name)
        start = time.monotonic()
        log(f"[bench] exporting {name} into {ir_dir(name)} (`ovchat export {name}`: fetch if needed, export, "
            "fidelity check)")
        command = [sys.executable, "-m", "ovchat", "export", name, "--force"]  # --force: replaces a stale folder
        run = subprocess.run(command, cwd=PACKAGE_PARENT)
        if run.returncode or not _exported(name):
            from ..engine import ModelError
            raise ModelError(f"`ovchat export {name}` failed (its output is above); run it by hand to see why, "
                             "or pass an exported folder to --model")
        log(f"[bench] {name} exported in {time.monotonic() - start:.0f} s")
    return ir_dir(name)


def model_files(name: str, build: bool = True) -> ModelFiles:
    """`name`'s exported folder and the GGUF it was exported from; with build=False, only what the
    cache already holds (None for a missing one)."""
    ir = ensure_ir(name) if build else ir_dir(name)
    gguf = gguf_path(name)  # the export fetched and verified it; fetched again if the cache lost it since
    if build and not gguf.is_file():
        gguf = fetch(name)
    return ModelFiles(f"{name} ({NAMED[name].gguf_name})", str(ir) if _exported(name) else None,
                      str(gguf) if gguf.is_file() else None)
