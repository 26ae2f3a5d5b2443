"""The decode roofline: each new token reads every weight once, so tokens/s <= bandwidth / bytes.

`memory_bandwidth_gbs()` measures how fast this machine reads memory, on every core at once, as
a decode step does (a single-thread copy underestimated it: llama.cpp "reached" ~100 % of it).
`decode_bytes()` counts the bytes one decode step must read: the weight file minus the token
embedding table when the output layer has its own (a step reads one row of it, not the table).
`step_bytes()` adds the KV cache a step reads at a given context (f16-sized: llama.cpp's default;
OpenVINO's u8 cache reads about half of it), and `achieved_gbs()` turns bytes per step and
tokens/s into the bandwidth a backend actually drew, to set against `memory_bandwidth_gbs()`.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path


def memory_bandwidth_gbs(size_mb: int = 1024, trials: int = 5, threads: int | None = None) -> float:
    """Best-of-`trials` read bandwidth in GB/s: one thread per core sums its slice of a buffer far
    larger than the caches (numpy's reductions release the GIL, so the threads run in parallel)."""
    import numpy as np
    threads = threads or os.cpu_count() or 1
    data = np.ones(size_mb * 2**20 // 8, dtype=np.int64)
    slices = np.array_split(data, threads)
    best = float("inf")
    for _ in range(trials):
        workers = [threading.Thread(target=np.sum, args=(part,)) for part in slices]
        start = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        best = min(best, time.perf_counter() - start)
    return data.nbytes / best / 1e9


def ir_decode_bytes(folder: str | Path) -> dict:
    """Bytes per decode step for an exported IR folder (openvino_model.bin + config.json)."""
    folder = Path(folder)
    total = (folder / "openvino_model.bin").stat().st_size
    embedding = _ir_embedding_bytes(folder)
    return {"weights_bytes": total, "embedding_bytes": embedding, "decode_bytes": total - embedding,
            "kv_bytes_per_token": _kv_bytes_per_token(json.loads((folder / "config.json").read_text()))}


def _ir_embedding_bytes(folder: Path) -> int:
    config = json.loads((folder / "config.json").read_text())
    if config.get("tie_word_embeddings", False):
        return 0  # the output layer reads the whole table every step
    import openvino as ov
    model = ov.Core().read_model(folder / "openvino_model.xml")
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Gather":
            continue
        source = op.input_value(0).get_node()
        while source.get_type_name() != "Constant" and source.get_input_size() > 0:
            source = source.input_value(0).get_node()  # through Convert/Subtract/Multiply decompression
        if source.get_type_name() == "Constant" and list(source.get_output_shape(0))[:1] == [config["vocab_size"]]:
            return source.get_byte_size()
    return 0


def _kv_bytes_per_token(config: dict, bytes_per_value: int = 2) -> int:
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    kv_heads = config.get("num_key_value_heads") or heads
    return 2 * config["num_hidden_layers"] * kv_heads * head_dim * bytes_per_value


def gguf_decode_bytes(path: str | Path) -> dict:
    """Bytes per decode step for a GGUF: every tensor but the embedding table (if untied)."""
    import gguf
    reader = gguf.GGUFReader(str(path))
    sizes = {t.name: int(t.n_bytes) for t in reader.tensors}
    embedding = sizes.get("token_embd.weight", 0) if "output.weight" in sizes else 0
    total = sum(sizes.values())
    return {"weights_bytes": total, "embedding_bytes": embedding, "decode_bytes": total - embedding}


def bound(bandwidth_gbs: float, decode_bytes: int) -> float:
    """The tokens/s a decode step can't beat on this machine."""
    return bandwidth_gbs * 1e9 / decode_bytes if decode_bytes else 0.0


def step_bytes(entry: dict, context_tokens: int, kv_bytes_per_token: int = 0) -> int:
    """Bytes one decode step reads with `context_tokens` already in the KV cache: the weights
    (`entry["decode_bytes"]`) plus the cache; `kv_bytes_per_token` stands in when `entry` has no
    figure of its own (a GGUF: the same model's IR figure)."""
    return entry["decode_bytes"] + entry.get("kv_bytes_per_token", kv_bytes_per_token) * context_tokens


def achieved_gbs(bytes_per_step: int, tokens_per_s: float) -> float:
    """The read bandwidth a backend drew while decoding: bytes per step x steps per second."""
    return bytes_per_step * tokens_per_s / 1e9
