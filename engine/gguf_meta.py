"""Read the header of a GGUF file: what the engine needs (architecture, context length, the
tensor types) without the `gguf` package. Arrays (the vocabulary) are skipped, not loaded.

`direct_load_problem` says whether openvino_genai's own GGUF reader (LLMPipeline on a .gguf)
runs a file as llama.cpp would: it builds the llama, qwen2 and qwen3 graphs only, and reads the
tensor types in DIRECT_TENSOR_TYPES (any other fails deep inside it with "gguf_tensor_to_f16
failed"). Its tokenizer splits every byte-level BPE text one way whatever the file's pre-tokenizer:
llama.cpp's ids on 252/252 strings of tests/texts/tokenizer_parity.json with `smollm` and `qwen2`,
204/252 with Llama 3's `llama-bpe`, 211/252 with `gpt-2`; a SentencePiece vocabulary does not load
("map::at"). Measured on 2026.4.1 (tests/test_gguf_direct.py). `ovchat export` takes them all.
"""

from __future__ import annotations

import struct
from pathlib import Path

from .errors import ModelError

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
# ggml's tensor type ids (ggml.h) -> names, for the types a GGUF commonly holds.
GGML_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1", 10: "Q2_K",
              11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS",
              19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS", 29: "IQ1_M", 30: "BF16",
              34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4"}
# What openvino_genai's GGUF reader runs (its gguf_utils, 2026.4).
DIRECT_ARCHITECTURES = ("llama", "qwen2", "qwen3")
DIRECT_TENSOR_TYPES = ("F32", "F16", "Q4_0", "Q4_1", "Q8_0", "Q4_K", "Q6_K")
DIRECT_PRE_TOKENIZERS = ("smollm", "qwen2")  # byte-level BPE ("gpt2" tokenizer model) only


def stop_token_ids(eos_id: int | None, eot_id: int | None) -> list[int]:
    """The ids that end an answer: EOS and, where the GGUF names one, end-of-turn. One rule for a
    GGUF run directly and for its export (tools/gguf_convert.py writes these into generation_config.json)."""
    return sorted({int(i) for i in (eos_id, eot_id) if i is not None})


def read_metadata(path: Path) -> dict:
    """The header's scalar and string values, keyed by name; arrays become their length."""
    return read_header(path)[0]


def read_header(path: Path) -> tuple[dict, dict]:
    """(metadata as read_metadata gives it, {tensor type name: how many tensors of that type})."""
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"GGUF":
                raise ModelError(f"{path} is not a GGUF file (bad magic). Pass an exported folder or a .gguf file.")
            version, tensors, count = struct.unpack("<IQQ", f.read(20))
            if version < 2:
                raise ModelError(f"{path} is GGUF version {version}; re-convert it with a current llama.cpp.")
            metadata = dict(_read_pair(f) for _ in range(count))
            types: dict = {}
            for _ in range(tensors):  # name, dimensions, type, offset
                _read_string(f)
                (dims,) = struct.unpack("<I", f.read(4))
                f.seek(8 * dims, 1)
                (kind,) = struct.unpack("<I", f.read(4))
                f.seek(8, 1)
                name = GGML_TYPES.get(kind, f"type {kind}")
                types[name] = types.get(name, 0) + 1
            return metadata, types
    except (OSError, struct.error, MemoryError, OverflowError) as error:  # garbage lengths in a corrupt header
        raise ModelError(f"Cannot read the GGUF header of {path}: {error or type(error).__name__}. "
                         "Check the file is complete.") from None


def direct_load_problem(metadata: dict, tensor_types) -> str | None:
    """What openvino_genai's GGUF reader cannot run as llama.cpp does in a file, as a phrase; None
    if it runs it all."""
    architecture = metadata.get("general.architecture")
    model, pre = metadata.get("tokenizer.ggml.model"), metadata.get("tokenizer.ggml.pre", "default")
    if architecture not in DIRECT_ARCHITECTURES:
        return f"architecture '{architecture}' (it runs {', '.join(DIRECT_ARCHITECTURES)})"
    odd = sorted(set(tensor_types) - set(DIRECT_TENSOR_TYPES))
    if odd:
        return f"tensor type {', '.join(odd)} (it reads {', '.join(DIRECT_TENSOR_TYPES)})"
    if model != "gpt2" or pre not in DIRECT_PRE_TOKENIZERS:
        kind = f"byte-level BPE vocabulary with the '{pre}' pre-tokenizer" if model == "gpt2" else f"'{model}' vocabulary"
        return (f"{kind} as llama.cpp tokenizes it (its tokenizer matches llama.cpp's for byte-level BPE with the "
                f"{' and '.join(DIRECT_PRE_TOKENIZERS)} pre-tokenizers only)")
    return None


def _read_pair(f):
    key = _read_string(f)
    (kind,) = struct.unpack("<I", f.read(4))
    return key, _read_value(f, kind)


def _read_value(f, kind):
    if kind in _SCALARS:
        fmt = _SCALARS[kind]
        return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]
    if kind == _STRING:
        return _read_string(f)
    if kind == _ARRAY:
        item_kind, n = struct.unpack("<IQ", f.read(12))
        if item_kind in _SCALARS:
            f.seek(n * struct.calcsize(_SCALARS[item_kind]), 1)
        else:
            for _ in range(n):
                _read_value(f, item_kind)
        return n
    raise ModelError(f"Unknown GGUF value type {kind}; the file may be corrupt.")


def _read_string(f) -> str:
    (n,) = struct.unpack("<Q", f.read(8))
    if n > 1 << 30:
        raise struct.error(f"a string of {n} bytes: the header is corrupt")
    data = f.read(n)
    if len(data) != n:
        raise struct.error("the file ends inside a string")
    return data.decode("utf-8", errors="replace")
