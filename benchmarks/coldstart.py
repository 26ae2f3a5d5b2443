"""Process start to first token: what a user waits for when an app starts and answers once.

`measure(backend, model, ...)` spawns a fresh Python process that imports the backend, loads the
model, answers a short prompt of random token ids (one new token), then answers a second fresh
prompt (one token) and a third (`new_tokens` tokens, for steady TTFT/TPOT), and prints one JSON
line. Figures (seconds unless the name says otherwise):

  import_s                  process spawn -> backend imported (interpreter start included)
  load_s                    model load/compile (for "engine": Engine.load, its warm-up included)
  warmup_s                  the engine's warm-up alone (part of load_s), 0 for other backends
  first_ttft_s              the first answer's wall time (1 new token)
  start_to_first_token_s    process spawn -> first token, what the user sees
  second_ttft_ms            the same on a fresh prompt, right after: the steady first-token cost
  ttft_ms, tpot_ms          a third fresh prompt with `new_tokens` new tokens, EOS ignored
  peak_rss_mb               the child's VmHWM at the end (file-backed mmap pages included)
  rss_anon_mb, rss_file_mb  resident heap vs file-backed (mmapped weights, libraries) at the end

Backends: "engine" (ovchat's Engine), "llmpipeline" (bare openvino_genai.LLMPipeline with the
engine's default properties: LATENCY, 1 stream) and "llama.cpp" (llama-cpp-python, 2 threads).
`model` is a path (IR folder or .gguf), or "default" / "phi3" (the embedded default model, the
Phi-3-mini-shaped benchmark model: the IR for OpenVINO backends, the GGUF for llama.cpp).

Cache states: "none" (no CACHE_DIR), "cold" (a fresh empty CACHE_DIR, and the OS page cache
dropped first if we may write /proc/sys/vm/drop_caches; `page_cache_dropped` says whether it
was; deleted afterwards) and "warm" (a CACHE_DIR populated by an earlier untimed process with the
same properties, kept in <tmp>/ovchat-coldstart-warm/<hash> for the next run).
llama.cpp has no compile cache: "cold" only drops the page cache.

Prompts are random ids with a new seed per call: LLMPipeline and llama.cpp reuse a cached prompt
prefix, which would flatter every second measurement. This module imports only the standard
library at top level (benchmarks/child.py too) so the child's import_s counts the backend alone.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .child import run_once, serve

BACKENDS = ("engine", "llmpipeline", "llama.cpp")
CACHE_STATES = ("none", "cold", "warm")


def measure(backend: str, model: str, device: str = "CPU", cache: str = "warm", properties: dict | None = None,
            prompt_tokens: int = 16, timeout_s: float = 600, new_tokens: int = 16,
            drop_caches: bool = True, log_path: Path | None = None) -> dict:
    """Run one fresh process and return its figures (see the module docstring) plus the settings,
    or raise WorkerError (benchmarks/child.py); the child's stderr goes to `log_path` if given.

    `drop_caches=False` keeps the OS page cache on a "cold" run (tests: don't slow the machine)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}: choose one of {', '.join(BACKENDS)}")
    if cache not in CACHE_STATES:
        raise ValueError(f"cache={cache!r}: choose one of {', '.join(CACHE_STATES)}")
    path = resolve_model(model, backend)
    spec = {"backend": backend, "model": str(path), "device": device, "properties": dict(properties or {}),
            "prompt_tokens": prompt_tokens, "new_tokens": new_tokens, "seed": random.randrange(2**31)}
    dropped = False
    if backend != "llama.cpp" and cache == "warm":
        spec["cache_dir"] = str(_warm_cache_dir(spec))
        if not any(Path(spec["cache_dir"]).glob("*.blob")):  # populate it, untimed
            _run_child(dict(spec, prompt_tokens=4, new_tokens=1), timeout_s, log_path)
    if cache == "cold":
        if backend != "llama.cpp":
            spec["cache_dir"] = tempfile.mkdtemp(prefix="ovchat-coldstart-")
        dropped = drop_caches and drop_page_cache()
    try:
        result = _run_child(spec, timeout_s, log_path)
    finally:
        if cache == "cold" and spec.get("cache_dir"):  # a compiled blob is as big as the model
            shutil.rmtree(spec["cache_dir"], ignore_errors=True)
    result.update(backend=backend, model=str(path), device=device, cache=cache, page_cache_dropped=dropped,
                  properties=spec["properties"], prompt_tokens=prompt_tokens, new_tokens=new_tokens)
    return result


def resolve_model(model: str, backend: str) -> Path:
    """A path for `model`; "default" and "phi3" name the project's two benchmark models."""
    gguf = backend == "llama.cpp"
    if model == "default":
        if gguf:
            folder = Path(_default_dir())  # `ovchat export default` keeps its GGUF source in <cache>/sources
            found = sorted(folder.glob("*.gguf")) + sorted((folder.parent.parent / "sources").glob("*.gguf"))
            if not found:
                raise FileNotFoundError("No GGUF of the default model found for llama.cpp; pass a path.")
            return found[0]
        return Path(_default_dir())
    if model == "phi3":
        from . import phi3_shaped
        return phi3_shaped.gguf_path() if gguf else phi3_shaped.ir_dir()
    return Path(model)


def drop_page_cache() -> bool:
    """Drop the OS page cache (needs root); False if not allowed."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def _default_dir() -> Path:
    from ..engine import default_model_dir
    return default_model_dir()


def _warm_cache_dir(spec: dict) -> Path:
    key = json.dumps([spec["backend"], spec["model"], spec["device"], sorted(spec["properties"].items())], default=str)
    return Path(tempfile.gettempdir()) / "ovchat-coldstart-warm" / hashlib.sha1(key.encode()).hexdigest()[:12]


def _run_child(spec: dict, timeout_s: float, log_path: Path | None) -> dict:
    """The figures of one fresh `python -m ovchat.benchmarks.coldstart --child` (benchmarks/child.py)."""
    return run_once("ovchat.benchmarks.coldstart", dict(spec, spawn_wall=time.time()), timeout_s, log_path,
                    args=["--child"])


# ---- the child: everything below runs in the fresh process -------------------------------------

def _child(spec: dict) -> dict:
    t0 = spec["spawn_wall"]
    rng = random.Random(spec["seed"])
    from .worker import id_range
    ids = id_range(spec["model"])  # the worker's synthetic ids (a .gguf has no config.json: its full range)
    prompts = [[rng.randrange(*ids) for _ in range(spec["prompt_tokens"])] for _ in range(3)]
    runner = {"engine": _EngineRunner, "llmpipeline": _PipelineRunner, "llama.cpp": _LlamaRunner}[spec["backend"]]
    runner.import_backend()
    imported = time.time()
    start = time.perf_counter()
    run = runner(spec)
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    run.answer(prompts[0], 1)
    first_ttft_s = time.perf_counter() - start
    first_token_wall = time.time()
    start = time.perf_counter()
    run.answer(prompts[1], 1)
    second_ttft_ms = (time.perf_counter() - start) * 1000
    ttft_ms, tpot_ms = run.answer(prompts[2], spec["new_tokens"])
    return {"import_s": imported - t0, "load_s": load_s, "warmup_s": run.warmup_s, "first_ttft_s": first_ttft_s,
            "start_to_first_token_s": first_token_wall - t0, "second_ttft_ms": second_ttft_ms,
            "ttft_ms": ttft_ms, "tpot_ms": tpot_ms, **_memory_mb(), "versions": runner.versions()}


class _PipelineRunner:
    warmup_s = 0.0

    @staticmethod
    def import_backend():
        global np, ov, ov_genai
        import numpy as np
        import openvino as ov
        import openvino_genai as ov_genai

    @staticmethod
    def versions() -> dict:
        return {"openvino": ov.get_version(), "openvino_genai": ov_genai.__version__}

    def __init__(self, spec: dict):
        props = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1", **_ov_properties(spec["properties"])}
        if spec.get("cache_dir"):
            props["CACHE_DIR"] = spec["cache_dir"]
        self.pipe = ov_genai.LLMPipeline(spec["model"], spec["device"], **props)

    def answer(self, ids: list[int], new_tokens: int) -> tuple[float, float]:
        config = self.pipe.get_generation_config()
        config.max_new_tokens, config.min_new_tokens, config.ignore_eos = new_tokens, new_tokens, True
        config.apply_chat_template = False
        perf = self.pipe.generate(ov.Tensor(np.array([ids], dtype=np.int64)), config).perf_metrics
        return perf.get_ttft().mean, perf.get_tpot().mean


class _EngineRunner:
    @staticmethod
    def import_backend():
        global engine
        from .. import engine

    @staticmethod
    def versions() -> dict:
        import openvino as ov
        import openvino_genai as ov_genai
        return {"openvino": ov.get_version(), "openvino_genai": ov_genai.__version__}

    def __init__(self, spec: dict):
        self.eng = engine.Engine.load(spec["model"], device=spec["device"], cache_dir=spec.get("cache_dir"),
                                      **_ov_properties(spec["properties"]))
        self.warmup_s = self.eng.load_metrics.warmup_ms / 1000

    def answer(self, ids: list[int], new_tokens: int) -> tuple[float, float]:
        options = engine.GenerationOptions(max_new_tokens=new_tokens, ignore_eos=True, apply_chat_template=False)
        metrics = self.eng.generate(ids, options).metrics
        return metrics.ttft_ms, metrics.tpot_ms


class _LlamaRunner:
    warmup_s = 0.0

    @staticmethod
    def import_backend():
        global llama_cpp
        import llama_cpp

    @staticmethod
    def versions() -> dict:
        return {"llama_cpp_python": llama_cpp.__version__}

    def __init__(self, spec: dict):
        options = {"n_ctx": 2048, "n_threads": os.cpu_count(), "n_batch": 512, "verbose": False,
                   **spec["properties"]}
        self.llm = llama_cpp.Llama(spec["model"], **options)

    def answer(self, ids: list[int], new_tokens: int) -> tuple[float, float]:
        self.llm.reset()
        start = time.perf_counter()
        self.llm.eval(ids)
        times = [time.perf_counter()]
        for _ in range(new_tokens - 1):  # greedy decode, EOS ignored
            self.llm.eval([_argmax(self.llm)])
            times.append(time.perf_counter())
        ttft_ms = (times[0] - start) * 1000
        tpot_ms = (times[-1] - times[0]) * 1000 / (len(times) - 1) if len(times) > 1 else 0.0
        return ttft_ms, tpot_ms


def _ov_properties(properties: dict) -> dict:
    # JSON can't carry a SchedulerConfig: {"scheduler_config": {"cache_size": 1}} becomes one, on
    # top of the latency-oriented defaults LLMPipeline uses when it isn't given one
    import openvino_genai as ov_genai
    props = dict(properties)
    if isinstance(props.get("scheduler_config"), dict):
        config = ov_genai.SchedulerConfig()
        config.max_num_batched_tokens, config.enable_prefix_caching = sys.maxsize, True
        for key, value in props["scheduler_config"].items():
            setattr(config, key, value)
        props["scheduler_config"] = config
    return props


def _argmax(llm) -> int:
    logits = llm.scores[llm.n_tokens - 1]
    return int(logits.argmax())


def _memory_mb() -> dict:
    # VmHWM is the peak; RssAnon (heap: repacked weights, KV cache) vs RssFile (mmapped model
    # files and libraries, reclaimable) says where the resident memory is at the end
    fields = {"VmHWM:": "peak_rss_mb", "RssAnon:": "rss_anon_mb", "RssFile:": "rss_file_mb"}
    status = Path("/proc/self/status").read_text().splitlines()
    return {fields[line.split()[0]]: int(line.split()[1]) / 1024 for line in status if line.split()[0] in fields}


# ---- the table -----------------------------------------------------------------------------------

COLUMNS = ("import_s", "load_s", "warmup_s", "first_ttft_s", "start_to_first_token_s", "second_ttft_ms",
           "ttft_ms", "tpot_ms", "peak_rss_mb", "rss_anon_mb", "rss_file_mb")


def summarize(runs: list[dict]) -> dict:
    """median/min/max of each figure over several runs of one configuration."""
    from .pairing import stats  # the parent's only: the child imports as little as it can
    return {key: stats(r.get(key) for r in runs) for key in COLUMNS}


def print_table(rows: list[tuple[str, dict]]) -> None:
    print("| config | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for name, summary in rows:
        cells = [f"{summary[k]['median']:.3g} ({summary[k]['min']:.3g}–{summary[k]['max']:.3g})" if summary[k]["n"]
                 else "–" for k in COLUMNS]
        print(f"| {name} | " + " | ".join(cells) + " |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ovchat.benchmarks.coldstart", description=__doc__.split("\n")[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", default="default", help='a path, "default" or "phi3"')
    parser.add_argument("--backends", default="engine,llmpipeline,llama.cpp")
    parser.add_argument("--caches", default="cold,warm")
    parser.add_argument("--device", default="CPU")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--prop", action="append", default=[], help="KEY=VALUE, an extra property (repeatable)")
    args = parser.parse_args(argv)
    if args.child:
        return serve(_child)
    properties = dict(p.split("=", 1) for p in args.prop)
    configs = [(b, c) for b in args.backends.split(",") for c in args.caches.split(",")
               if not (b == "llama.cpp" and c == "warm")]
    runs: dict = {config: [] for config in configs}
    for _ in range(args.trials):  # interleaved: every configuration sees the same machine load
        for backend, cache in configs:
            runs[(backend, cache)].append(measure(backend, args.model, args.device, cache,
                                                  {} if backend == "llama.cpp" else properties,
                                                  args.prompt_tokens, new_tokens=args.new_tokens))
    print(f"model={args.model} device={args.device} trials={args.trials} prompt={args.prompt_tokens} "
          f"cpus={os.cpu_count()} versions={next(iter(runs.values()))[0]['versions']}")
    print_table([(f"{b} {c}", summarize(r)) for (b, c), r in runs.items()])
    print(json.dumps({f"{b} {c}": r for (b, c), r in runs.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
