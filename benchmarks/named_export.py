"""Named real models (`ovchat export NAME`'s registry, tools/named_models.py) for `ovchat bench`.

    <cache>/bench/<name>/     the model exported by `python -m ovchat export <name> OUT` (its recipe,
                              its fidelity check), on first use
    <cache>/sources/<file>    the registry's GGUF that export read: what llama.cpp runs

so ovchat and llama.cpp measure the same file. `<cache>` is `engine.cache_root()` ($OVCHAT_CACHE or
~/.cache/ovchat). The export runs in a child process (torch and optimum stay out of the bench's
own memory), once, under the same kind of lock as the Phi-3-shaped build; `ovchat export` writes
its folder atomically. An export whose recorded source is not the registry's file (another
version) is replaced.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ..tools.named_models import NAMED, fetch, gguf_path
from .backends import ModelFiles
from .child import PACKAGE_PARENT
from .phi3_shaped import bench_dir, build_lock

def ir_dir(name: str) -> Path:
    return bench_dir() / name


def _exported_from_registry(folder: Path, name: str) -> bool:
    """The folder holds a finished export of the registry's file for `name`."""
    try:
        source = json.loads((folder / "ovchat.json").read_text())["source"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return (folder / "openvino_model.xml").is_file() and source.get("sha256") == NAMED[name].sha256


def ensure_ir(name: str, log=lambda m: print(m, file=sys.stderr, flush=True)) -> Path:
    """The exported folder of named model `name`, exporting it (once, under the lock) if absent."""
    final = ir_dir(name)
    if _exported_from_registry(final, name):
        return final
    with build_lock(name):
        if _exported_from_registry(final, name):
            return final
        shutil.rmtree(final, ignore_errors=True)  # a stale or another version's export
        start = time.monotonic()
        log(f"[bench] exporting {name} into {final} (`ovchat export {name}`: fetch if needed, export, fidelity check)")
        run = subprocess.run([sys.executable, "-m", "ovchat", "export", name, str(final)], cwd=PACKAGE_PARENT)
        if run.returncode or not _exported_from_registry(final, name):
            from ..engine import ModelError
            raise ModelError(f"`ovchat export {name}` failed (its output is above); run it by hand to see why, "
                             f"or pass an exported folder to --model")
        log(f"[bench] {name} exported in {time.monotonic() - start:.0f} s")
    return final


def model_files(name: str, build: bool = True) -> ModelFiles:
    """`name`'s exported folder and the GGUF it was exported from; with build=False, only what the
    cache already holds (None for a missing one)."""
    label = f"{name} ({NAMED[name].gguf_name})"
    ir = ensure_ir(name) if build else ir_dir(name)
    gguf = gguf_path(name)  # the export fetched and verified it; fetched again if the cache lost it since
    if build and not gguf.is_file():
        gguf = fetch(name)
    return ModelFiles(label, str(ir) if _exported_from_registry(ir, name) else None,
                      str(gguf) if gguf.is_file() else None)
