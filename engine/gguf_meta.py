"""Read the key/value header of a GGUF file: what the engine needs (architecture, context
length) without the `gguf` package. Arrays (the vocabulary) are skipped, not loaded."""

from __future__ import annotations

import struct
from pathlib import Path

from .errors import ModelError

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


def stop_token_ids(eos_id: int | None, eot_id: int | None) -> list[int]:
    """The ids that end an answer: EOS and, where the GGUF names one, end-of-turn. One rule for a
    GGUF run directly and for its export (tools/gguf_convert.py writes these into generation_config.json)."""
    return sorted({int(i) for i in (eos_id, eot_id) if i is not None})


def read_metadata(path: Path) -> dict:
    """The header's scalar and string values, keyed by name; arrays become their length."""
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"GGUF":
                raise ModelError(f"{path} is not a GGUF file (bad magic). Pass an exported folder or a .gguf file.")
            version, _tensors, count = struct.unpack("<IQQ", f.read(20))
            if version < 2:
                raise ModelError(f"{path} is GGUF version {version}; re-convert it with a current llama.cpp.")
            return dict(_read_pair(f) for _ in range(count))
    except (OSError, struct.error) as error:
        raise ModelError(f"Cannot read the GGUF header of {path}: {error}. Check the file is complete.") from None


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
    data = f.read(n)
    if len(data) != n:
        raise struct.error("the file ends inside a string")
    return data.decode("utf-8", errors="replace")
