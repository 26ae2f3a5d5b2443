"""llama.cpp's own `llama-server`, built from the llama.cpp that llama-cpp-python vendors.

    python -m ovchat.benchmarks.llama_server build     # once: ~15 min on 2 cores, shows its progress
    python -m ovchat.benchmarks.llama_server path      # where the binary is (exit 1 if not built)

The build is an explicit, cached step, never run by tests or by `ovchat bench`: it downloads the
source distribution of the installed llama-cpp-python version from PyPI (`pip download
--no-binary :all:`), configures its `vendor/llama.cpp` with CMake for this CPU (GGML_NATIVE,
OpenMP as llama-cpp-python's own build, no HTTPS, no web UI: nothing is fetched at build time)
and builds only the `llama-server` target with `-j2`. The binary lands in
`$OVCHAT_CACHE/bench/llama-server/<version>/llama-server` (shared libraries are linked in); the
source and build tree are deleted afterwards. So llama-server and llama_cpp.server run the same
llama.cpp commit, and the server benchmark compares servers, not llama.cpp versions.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

CMAKE_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=ON",            # this machine's instruction set, as pip's build of llama-cpp-python
    "-DBUILD_SHARED_LIBS=OFF",     # one self-contained binary in the cache
    "-DLLAMA_BUILD_SERVER=ON", "-DLLAMA_BUILD_TOOLS=ON", "-DLLAMA_BUILD_COMMON=ON",
    "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_OPENSSL=OFF",         # HTTP on 127.0.0.1 only
    "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF",  # the web UI would need npm or a download
)


def version() -> str | None:
    """The installed llama-cpp-python version, whose vendored llama.cpp we build."""
    try:
        return importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        return None


def binary_path(llama_cpp_python_version: str | None = None) -> Path:
    from ..engine import cache_root
    return cache_root() / "bench" / "llama-server" / (llama_cpp_python_version or version() or "unknown") / "llama-server"


BUILD_COMMAND = "python -m ovchat.benchmarks.llama_server build"
# Measured 2026-12-07 on this project's machines (a VM of an Intel Xeon with AMX): the build's AMX
# kernels crash the server at its first computation (SIGSEGV in ggml_backend_amx_mul_mat), and
# --no-repack, which keeps weights in the file's layout, is what avoids them. For the Q4_1 default
# model AMX was the only repack on offer; other quant types lose their AVX repack too.
RUNTIME_FLAGS = ("--no-repack",)


def missing_reason() -> str | None:
    """Why llama-server can't run here (with the command that fixes it), or None when built."""
    if version() is None:
        return "llama-cpp-python is not installed (the bench extra): its vendored llama.cpp is what llama-server is built from"
    path = binary_path()
    if not path.exists():
        return f"llama-server is not built ({path} is missing): run `{BUILD_COMMAND}` (~15 min on 2 cores)"
    return None


def build(jobs: int = 2, keep_tree: bool = False, log=print) -> Path:
    """Download, configure and build; returns the binary's path (does nothing if it exists)."""
    target = binary_path()
    if target.exists():
        log(f"[llama-server] already built: {target}")
        return target
    wanted = version()
    if wanted is None:
        raise RuntimeError("llama-cpp-python is not installed: install the bench extra first")
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} not found: install cmake and a C++ compiler (apt-get install cmake g++)")
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="llama-server-build-", dir=target.parent))
    try:
        log(f"[llama-server] downloading the llama-cpp-python {wanted} source distribution ...")
        _run([sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps",
              f"llama-cpp-python=={wanted}", "-d", str(work)], log)
        sdist = next(work.glob("llama_cpp_python-*.tar.gz"))
        with tarfile.open(sdist) as archive:
            archive.extractall(work, filter="data")
        source = next(work.glob("llama_cpp_python-*/vendor/llama.cpp"))
        build_dir = work / "build"
        log(f"[llama-server] configuring {source} ...")
        _run(["cmake", "-S", str(source), "-B", str(build_dir), *CMAKE_OPTIONS]
             + (["-G", "Ninja"] if shutil.which("ninja") else []), log)
        log(f"[llama-server] building the llama-server target with -j{jobs} (~15 min on 2 cores) ...")
        _run(["cmake", "--build", str(build_dir), "--target", "llama-server", "-j", str(jobs)], log)
        built = next(build_dir.rglob("bin/llama-server"))
        partial = target.with_suffix(".partial")
        shutil.copy2(built, partial)
        os.replace(partial, target)  # atomic: a half-copied binary is never taken for a build
        log(f"[llama-server] built: {target}")
        return target
    finally:
        if keep_tree:
            log(f"[llama-server] source and build tree kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _run(command: list[str], log) -> None:
    # The compiler's lines stream through as progress; a failure raises with the command.
    log("  $ " + " ".join(command))
    process = subprocess.run(command)
    if process.returncode != 0:
        raise RuntimeError(f"{command[0]} failed with exit code {process.returncode}: {' '.join(command)}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ovchat.benchmarks.llama_server", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("build", "path"))
    parser.add_argument("--jobs", type=int, default=2, help="parallel compile jobs (default 2)")
    parser.add_argument("--keep-tree", action="store_true", help="keep the source and build tree")
    args = parser.parse_args(argv)
    if args.action == "path":
        reason = missing_reason()
        print(reason or binary_path())
        return 1 if reason else 0
    try:
        build(args.jobs, args.keep_tree)
    except (RuntimeError, StopIteration, OSError) as error:
        print(f"llama-server build failed: {error or 'an expected file was not found'}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
