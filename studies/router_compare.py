"""Several models behind one server: `ovchat serve` against llama.cpp's `llama-server` router mode
(issue 29 point 8), the same measurements in the same repetition.

The default model under two names, a and b, at most one loaded:
  ovchat        ovchat serve -m a=IR -m b=IR --models-max 1           (the export of the GGUF)
  llama-server  llama-server --models-dir DIR --models-max 1          (DIR holds a.gguf, b.gguf:
                                                                       links to the same file)
Per repetition and server (the servers' order alternating): cold (first token of the first
request for a, its load included), warm (the next request to a), then ALTERNATIONS requests
alternating b, a, b, a (each unloads the other model and loads its own). 8 greedy tokens, EOS
ignored, fresh 16-word prompts. llama-server is built once with `python -m
ovchat.benchmarks.llama_server build`.

    python -m studies.router_compare [--reps 3] [--out studies/results/router-compare.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from ovchat.benchmarks import llama_server
from ovchat.benchmarks.server_launch import ServerSpec, launched
from ovchat.benchmarks.server_load import make_prompt, stream_chat
from ovchat.engine import default_model_dir
from ovchat.tools.default_model import gguf_path

ALTERNATIONS = 4
FIELDS = {"ignore_eos": True}


def first_token_ms(url: str, model: str, seed: int) -> float:
    result = stream_chat(url, make_prompt(16, seed=seed), 8, model, FIELDS, timeout_s=600)
    if not result.ok:
        raise RuntimeError(f"{model}: {result.error}")
    return result.ttft_ms


def measure(spec: ServerSpec, log: Path, seed: int) -> dict:
    with launched(spec, log) as url:
        cold = first_token_ms(url, "a", seed)
        warm = first_token_ms(url, "a", seed + 1)
        alternating = [first_token_ms(url, "ba"[i % 2], seed + 2 + i) for i in range(ALTERNATIONS)]
    return {"cold_ms": cold, "warm_ms": warm, "alternating_ms": alternating,
            "alternating_ms_p50": statistics.median(alternating)}


def specs(folder: Path) -> dict[str, ServerSpec]:
    gguf, ir = gguf_path(), default_model_dir()
    for name in ("a", "b"):
        link = folder / f"{name}.gguf"
        if not link.exists():
            link.symlink_to(gguf)
    return {
        "ovchat": ServerSpec("ovchat serve, 2 models, at most 1",
                             [sys.executable, "-m", "ovchat", "serve", "-m", f"a={ir}", "-m", f"b={ir}",
                              "--models-max", "1", "--host", "127.0.0.1", "--port", "{port}"], ready_timeout_s=600),
        "llama-server": ServerSpec("llama-server router, at most 1",
                                   [str(llama_server.binary_path()), "--models-dir", str(folder), "--models-max", "1",
                                    "--host", "127.0.0.1", "--port", "{port}", "-c", "2048",
                                    *llama_server.RUNTIME_FLAGS], ready_timeout_s=600),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", default="studies/results/router-compare.json")
    args = parser.parse_args()
    if reason := llama_server.missing_reason():
        sys.exit(reason)
    runs = []
    with tempfile.TemporaryDirectory(prefix="ovchat-router-") as folder:
        servers = specs(Path(folder))
        for rep in range(args.reps):
            order = list(servers) if rep % 2 == 0 else list(servers)[::-1]
            for name in order:
                run = {"rep": rep + 1, "server": name, "load": os.getloadavg()[0],
                       **measure(servers[name], Path(folder) / f"{name}-{rep}.log", seed=700_000 + rep * 100)}
                runs.append(run)
                print(json.dumps(run), flush=True)
    summary = {}
    for name in ("ovchat", "llama-server"):
        mine = [r for r in runs if r["server"] == name]
        summary[name] = {key: statistics.median(r[key] for r in mine) for key in ("cold_ms", "warm_ms", "alternating_ms_p50")}
    summary["ratios ovchat / llama-server"] = {key: summary["ovchat"][key] / summary["llama-server"][key]
                                               for key in summary["ovchat"]}
    print(json.dumps(summary, indent=1))
    Path(args.out).write_text(json.dumps({"runs": runs, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
