#!/usr/bin/env bash
# Install ovchat into ./.venv (or $OVCHAT_VENV) on a fresh machine, idempotently.
#   tools/install.sh            runtime + export + bench + serve + test extras (what CI and the README use)
#   tools/install.sh runtime    runtime only: openvino, openvino-genai, openvino-tokenizers, numpy
#
# Why two pip steps: optimum-intel requires torchvision, but PyPI's torchvision fails to
# import against the CPU torch 2.13.0 wheel ("operator torchvision::nms does not exist"),
# which breaks `import transformers` and so every export. Without torchvision the CPU-torch
# export works (venv ~1.6 GB instead of ~6 GB for torch 2.14.1 + torchvision 0.29.1), so we
# install optimum-intel without its dependencies and list the ones it needs in the `export` extra.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${OVCHAT_VENV:-.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip() { "$venv/bin/python" -m pip --disable-pip-version-check -q "$@"; }
pip install --upgrade pip
if [ "${1:-full}" = runtime ]; then
  pip install -e .
  exit 0
fi
pip install -e ".[export,bench,serve,test]"
pip install --no-deps "optimum-intel==2.2.0"
# A torchvision from elsewhere would break transformers' import (see above).
"$venv/bin/python" -m pip uninstall -y -q torchvision 2>/dev/null || true
