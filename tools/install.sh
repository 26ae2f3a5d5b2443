#!/usr/bin/env bash
# Install ovchat into ./.venv (or $OVCHAT_VENV) on a fresh machine, idempotently.
#   tools/install.sh            runtime + export extras: the README's main job (no llama.cpp build)
#   tools/install.sh full       + bench, serve, ray and test extras: what the tests and CI need; the bench
#                               extra's llama-cpp-python compiles llama.cpp (~7 min on 2 cores)
#   tools/install.sh runtime    runtime only: openvino, openvino-genai, openvino-tokenizers, numpy
#
# Why `full` is apart: llama-cpp-python has no CPU wheel on PyPI for this platform, so pip
# compiles llama.cpp, ~7 of the 9 install minutes measured on 2 cores, and only the benchmark's
# llama.cpp backend uses it (without it `ovchat bench` reports that backend as skipped); the
# serve and test extras (the server, pytest, its browser driver) are not part of the main job either.
#
# Why two pip steps: optimum-intel requires torchvision, but PyPI's torchvision fails to
# import against the CPU torch 2.13.0 wheel ("operator torchvision::nms does not exist"),
# which breaks `import transformers` and so every export. Without torchvision the CPU-torch
# export works (venv ~1.6 GB instead of ~6 GB for torch 2.14.1 + torchvision 0.29.1), so we
# install optimum-intel without its dependencies and list the ones it needs in the `export` extra.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-main}"
case "$mode" in
  main|full|runtime) ;;
  *) echo "usage: tools/install.sh [runtime|full]  (no argument: runtime + export)" >&2; exit 2 ;;
esac
venv="${OVCHAT_VENV:-.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip() { "$venv/bin/python" -m pip --disable-pip-version-check -q "$@"; }
pip install --upgrade pip
if [ "$mode" = runtime ]; then
  pip install -e .
  exit 0
fi
# --no-compile: pip would byte-compile all ~12,000 .py files of the export tools (measured: 68 s of
# CPU); Python compiles the few it imports on first use instead.
pip install --no-compile -e ".[export]"
pip install --no-compile --no-deps "optimum-intel==2.2.0"
# A torchvision from elsewhere would break transformers' import (see above).
"$venv/bin/python" -m pip uninstall -y -q torchvision 2>/dev/null || true
[ "$mode" = full ] || exit 0

# AMX off: llama.cpp's -march=native build compiles AMX tile kernels wherever the CPU lists AMX,
# and a VM that lists AMX without enabling its state kills them with SIGILL at the first matmul
# (measured on this project's Xeon machines: `tilezero` in ggml_backend_amx_mul_mat). A build
# that has them is rebuilt.
export CFLAGS="${CFLAGS:-} -mno-amx-tile -mno-amx-int8 -mno-amx-bf16" CXXFLAGS="${CXXFLAGS:-} -mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
amx_build="import llama_cpp, sys; sys.exit(b'AMX_INT8 = 1' not in llama_cpp.llama_print_system_info())"
if "$venv/bin/python" -c "import llama_cpp" 2>/dev/null; then
  if ! "$venv/bin/python" -c "$amx_build" 2>/dev/null; then
    pip install -e ".[export,bench,serve,test,ray]"   # llama-cpp-python is already built
    exit 0
  fi
  "$venv/bin/python" -m pip uninstall -y -q llama-cpp-python   # built with AMX: build it again
fi
echo "compiling llama.cpp for llama-cpp-python (the benchmark's llama.cpp backend; ~7 min on 2 cores)…" >&2
# pip -v streams the build's "[42/193] g++ ..." lines (Ninja): show one per 10 %, keep the whole log.
log="$venv/llama-cpp-build.log"
set +e
# --no-cache-dir: pip's wheel cache does not key on CFLAGS, and would hand back an AMX build.
"$venv/bin/python" -m pip --disable-pip-version-check install --no-cache-dir -v -e ".[export,bench,serve,test,ray]" 2>&1 | tee "$log" |
  awk 'match($0, /^ *\[[0-9]+\/[0-9]+\] /) { split(substr($0, RSTART, RLENGTH), n, /[^0-9]+/); pct = int(100 * n[2] / n[3])
         if (pct >= shown + 10) { shown = pct - pct % 10; printf "    llama.cpp build %d %%\n", pct > "/dev/stderr"; fflush() } }'
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then
  tail -n 20 "$log" >&2
  echo "installing the bench, serve, ray and test extras failed (full log: $log); it needs gcc, g++ and cmake" >&2
  exit "$status"
fi
echo "llama-cpp-python installed (log: $log)" >&2
