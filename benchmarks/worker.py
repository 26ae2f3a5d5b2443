"""One measurement in a fresh process: `python -m ovchat.benchmarks.worker`, one job on stdin.

The job names a task, a backend, a model's files, a device and parameters. The worker loads the
model, runs the task, and answers one JSON line (benchmarks/child.py's protocol: the runner's
`Context.spawn` sends it). Running each measurement in its own process isolates memory (peak RSS
is the process's own), gives cold starts, and contains crashes.
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import asdict

from .backends import ModelFiles, create
from .child import serve

ID_RANGE = (300, 30000)  # ordinary token ids in every model here (no special tokens)


def prompt_ids(length: int, seed: int) -> list[int]:
    """A synthetic prompt of exactly `length` token ids. Every repetition gets a new seed:
    LLMPipeline caches prompt prefixes, so a repeated prompt would measure that cache."""
    import numpy as np
    return np.random.default_rng(seed).integers(*_id_range, size=length).tolist()


_id_range = ID_RANGE  # narrowed to the model's vocabulary once it is known (use_vocabulary)


def id_range(model_dir: str | None) -> tuple[int, int]:
    """ID_RANGE, kept inside a vocabulary smaller than it (the tests' tiny models: the engine
    refuses ids it has no embedding for). Larger ones keep ID_RANGE: the same prompts as ever."""
    import json
    from pathlib import Path
    try:
        vocab = json.loads((Path(model_dir) / "config.json").read_text())["vocab_size"] if model_dir else None
    except (OSError, KeyError, ValueError):
        vocab = None
    high = min(ID_RANGE[1], vocab) if vocab else ID_RANGE[1]
    return min(ID_RANGE[0], high // 2), high


def use_vocabulary(files: ModelFiles) -> None:
    global _id_range
    _id_range = id_range(files.ir)


def chat_message(turn: int, seed: int, words: int = 40) -> str:
    import numpy as np
    rng = np.random.default_rng(seed * 100 + turn)
    vocab = ["model", "river", "quick", "light", "stone", "green", "table", "music", "paper", "cloud",
             "north", "bread", "glass", "field", "story", "train", "house", "water", "dream", "plant"]
    return f"Question {turn + 1}: " + " ".join(rng.choice(vocab, size=words)) + "?"


def peak_rss_mb() -> float:
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over fork+exec from the parent.
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def rss_mb() -> float:
    import psutil
    return psutil.Process().memory_info().rss / 2**20


WARMUP_NEW_TOKENS = 4  # a warm-up runs the prefill of each length and a few decode steps, not a full answer


def task_latency(backend, p: dict) -> dict:
    """TTFT/TPOT/tokens/s at each prompt length; warm-ups first. Repetition `rep` gets the same
    prompts in every backend's worker (a fair pair), and a new one in every repetition."""
    out = {}
    for length in p["lengths"]:
        for w in range(p["warmup"]):
            backend.generate_ids(prompt_ids(length, seed=length * 1000 + 500 + w), WARMUP_NEW_TOKENS)
        samples = []
        for i in range(p["reps"]):
            rep = p.get("rep", 0) + i
            sample = backend.generate_ids(prompt_ids(length, seed=length * 1000 + rep), p["new_tokens"])
            log(f"latency len={length} rep={rep}: ttft {sample.ttft_ms:.0f} ms, tpot {sample.tpot_ms:.1f} ms")
            samples.append(asdict(sample))
        out[str(length)] = samples
    return {"lengths": out}


def task_chat(backend, p: dict) -> dict:
    """TTFT of each turn of a chat, a new conversation (and new messages) per repetition;
    the warm-up is a one-turn conversation. A model the backend can't chat with answers {"skip": why}."""
    if why := backend.chat_unavailable():
        return {"skip": why}
    for w in range(p["warmup"]):
        backend.chat_reset()
        backend.chat_turn(chat_message(0, seed=900 + w), WARMUP_NEW_TOKENS)
    runs = []
    for i in range(p["reps"]):
        rep = p.get("rep", 0) + i
        backend.chat_reset()
        ttfts = [backend.chat_turn(chat_message(turn, seed=rep), p["new_tokens"]) for turn in range(p["turns"])]
        log(f"chat rep={rep}: ttft per turn " + " ".join(f"{t:.0f}" for t in ttfts))
        runs.append(ttfts)
    return {"ttft_ms_per_turn": runs}


def task_load(backend, p: dict, load_ms: float) -> dict:
    """Load time (measured by _load) and the first short answer after it."""
    sample = backend.generate_ids(prompt_ids(16, seed=7), 1)
    return {"load_ms": load_ms, "warmup_ms": getattr(backend, "warmup_ms", 0.0), "first_token_ms": sample.ttft_ms}


def task_memory(backend, p: dict, load_ms: float) -> dict:
    after_load = rss_mb()  # the engine's: after its warm-up and the release of redundant pages
    backend.generate_ids(prompt_ids(p["prompt_len"], seed=11), p["new_tokens"])
    return {"rss_after_load_mb": after_load, "rss_end_mb": rss_mb(), "peak_rss_mb": peak_rss_mb(),
            "load_ms": load_ms}


def task_concurrency(backend, p: dict) -> dict:
    """`requests` prompts at once; warm-up batches first (their own prompts), then `reps` batches."""
    seeds = [90000 + w * 100 for w in range(p["warmup"])]
    seeds += [5000 + (p.get("rep", 0) + i) * 100 for i in range(p["reps"])]
    runs = []
    for i, seed in enumerate(seeds):
        batch = [prompt_ids(p["prompt_len"], seed=seed + r) for r in range(p["requests"])]
        start = time.perf_counter()
        latencies = backend.generate_concurrent(batch, p["new_tokens"])
        wall = (time.perf_counter() - start) * 1000
        log(f"concurrency {p['hint']} seed={seed}: wall {wall:.0f} ms")
        if i >= p["warmup"]:
            runs.append({"wall_ms": wall, "latency_ms": latencies,
                         "tokens_per_s": p["requests"] * p["new_tokens"] * 1000 / wall})
    return {"runs": runs}


def _load(backend_name: str, job: dict):
    backend = create(backend_name)
    files = ModelFiles(**job["model"])
    use_vocabulary(files)
    p = job["params"]
    load_ms = backend.load(files, job["device"], p.get("hint", "LATENCY"), p.get("cache_dir"))
    return backend, load_ms


def run(job: dict) -> dict:
    task, p = job["task"], job["params"]
    backend, load_ms = _load(job["backend"], job)
    log(f"loaded in {load_ms:.0f} ms")
    if task == "chat":
        data = task_chat(backend, p)
    else:
        if task == "latency":
            data = dict(task_latency(backend, p), load_ms=load_ms)
        elif task == "load":
            data = task_load(backend, p, load_ms)
        elif task == "memory":
            data = task_memory(backend, p, load_ms)
        elif task == "concurrency":
            data = task_concurrency(backend, p)
        else:
            raise ValueError(f"unknown task {task!r}")
    data["peak_rss_mb"] = peak_rss_mb()
    return data


def log(message: str) -> None:
    print(f"    {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(serve(run))
