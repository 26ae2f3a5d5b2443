"""A GGUF tensor's quantized blocks as OpenVINO compressed-weight parts: integers q, a zero point z
(or none) and a scale s per group, with w = (q - z) * s what llama.cpp's dequantization gives.

  type   group  q                      z                   s              exact?
  Q4_0   32     u4 0..15               u4 8                f16 d          yes
  Q4_1   32     u4 0..15               f16 -m/d            f16 d          z rounded to f16
  Q5_0   32     i8 -16..15             none                f16 d          yes
  Q5_1   32     u8 0..31               f16 -m/d            f16 d          z rounded to f16
  Q8_0   32     i8                     none                f16 d          yes
  Q4_K   32     u4 0..15               f16 dmin*m/(d*sc)   f16 d*sc       s and z rounded to f16
  Q5_K   32     u8 0..31               f16 dmin*m/(d*sc)   f16 d*sc       s and z rounded to f16
  Q6_K   16     i8 -32..31             none                f16 d*sc       s rounded to f16

K-quants hold 256-weight super-blocks with one f16 d (and dmin) and small integer sub-scales
(and mins) per 32 (Q6_K: per 16) weights: their product is one f16 scale per group here, within
f16 rounding (2^-11) of the f32 product llama.cpp uses. OpenVINO has no u5/u6 type, so 5- and
6-bit integers go in a byte. The layouts are ggml's (ggml-quants.h), as gguf-py's dequantizers read
them; tests/test_gguf_kept.py checks each decoding against gguf-py's on every type.
"""

import numpy as np

QK_K = 256
# bytes per block and weights per block
SIZES = {"Q4_0": (18, 32), "Q4_1": (20, 32), "Q5_0": (22, 32), "Q5_1": (24, 32), "Q8_0": (34, 32),
         "Q4_K": (144, QK_K), "Q5_K": (176, QK_K), "Q6_K": (210, QK_K)}
TYPES = tuple(SIZES)


def _f16(raw: np.ndarray) -> np.ndarray:
    """Two bytes at the end of `raw` as float32 [..., 1]."""
    return np.ascontiguousarray(raw).view(np.float16).astype(np.float32)


def _nibbles(packed: np.ndarray) -> np.ndarray:
    """[..., n] bytes -> [..., 2n]: the n low nibbles, then the n high ones (ggml's order in a 32-run)."""
    return np.concatenate([packed & 0x0F, packed >> 4], axis=-1)


def _bits(packed: np.ndarray, count: int) -> np.ndarray:
    """[..., n] bytes -> [..., n*8] bits, little-endian (bit j of the little-endian word is weight j)."""
    return np.unpackbits(packed, axis=-1, bitorder="little")[..., :count]


def _k_scales(scales: np.ndarray) -> tuple:
    """Q4_K/Q5_K's 12 bytes -> the 8 six-bit sub-scales and 8 six-bit mins."""
    lo, hi, mixed = scales[..., 0:4], scales[..., 4:8], scales[..., 8:12]
    sc = np.concatenate([lo & 63, (mixed & 15) | ((lo >> 6) << 4)], axis=-1)
    mins = np.concatenate([hi & 63, (mixed >> 4) | ((hi >> 6) << 4)], axis=-1)
    return sc.astype(np.float32), mins.astype(np.float32)


def _with_min(q, d, m):
    """w = d*q + m as (q, z, s): z = -m/d. A group whose d is 0 holds m alone: q set to 0, s = m, z = -1."""
    flat = d == 0
    zero = np.where(flat, -1.0, -m / np.where(flat, 1.0, d))
    q = np.where(flat, 0, q).astype(q.dtype)
    return q, zero.astype(np.float16), np.where(flat, m, d).astype(np.float16)


def _k_parts(blocks, q):
    """Q4_K/Q5_K: q [rows, n, 8, 32] with d, dmin, scales at bytes 0..15 -> (q, z, s) per 32."""
    d, dmin = _f16(blocks[..., 0:2]), _f16(blocks[..., 2:4])
    sc, mins = _k_scales(blocks[..., 4:16])
    scale = (d * sc)[..., None]
    offset = (dmin * mins)[..., None]   # w = scale*q - offset
    rounded = scale.astype(np.float16).astype(np.float32)
    rows = q.shape[0]
    q, zero, s = _with_min(q, rounded, -offset)
    return q.reshape(rows, -1, 32), zero.reshape(rows, -1, 1), s.reshape(rows, -1, 1)


def decode(kind: str, raw: np.ndarray, rows: int, cols: int) -> tuple:
    """(q, zero point or None, scale) of a [rows, cols] tensor's raw blocks, shaped
    [rows, cols/group, group] and [rows, cols/group, 1]."""
    size, per_block = SIZES[kind]
    blocks = np.asarray(raw, dtype=np.uint8).reshape(rows, cols // per_block, size)
    if kind in ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"):
        d = _f16(blocks[..., 0:2])
        if kind == "Q8_0":
            return blocks[..., 2:].copy().view(np.int8), None, d.astype(np.float16)
        if kind == "Q4_0":
            return _nibbles(blocks[..., 2:]), np.full(d.shape, 8, dtype=np.uint8), d.astype(np.float16)
        if kind == "Q4_1":
            return _with_min(_nibbles(blocks[..., 4:]), d, _f16(blocks[..., 2:4]))
        start = 2 if kind == "Q5_0" else 4     # then 4 bytes of fifth bits, then 16 of nibbles
        q = _nibbles(blocks[..., start + 4:]) | (_bits(blocks[..., start:start + 4], 32) << 4)
        if kind == "Q5_0":
            return (q.astype(np.int16) - 16).astype(np.int8), None, d.astype(np.float16)
        return _with_min(q, d, _f16(blocks[..., 2:4]))
    n = cols // QK_K
    if kind == "Q4_K":  # 128 bytes: four runs of 32, each sub-block 2j in the low nibbles, 2j+1 in the high
        q = _nibbles(blocks[..., 16:].reshape(rows, n, 4, 32)).reshape(rows, n, 8, 32)
        return _k_parts(blocks, q)
    if kind == "Q5_K":  # as Q4_K, plus 32 bytes whose bit i of byte k is sub-block i's fifth bit of weight k
        low = _nibbles(blocks[..., 48:].reshape(rows, n, 4, 32)).reshape(rows, n, 8, 32)
        high = np.unpackbits(blocks[..., 16:48, None], axis=-1, bitorder="little")   # [rows, n, 32 (k), 8 (i)]
        return _k_parts(blocks, low | (high.swapaxes(-1, -2) << 4))
    # Q6_K: two halves of 128 weights; a half's 64 low-nibble bytes give weights 0..63 (low nibbles)
    # and 64..127 (high ones); its 32 high-bit bytes give 2 bits to weights k, k+32, k+64, k+96
    low = _nibbles(blocks[..., 0:128].reshape(rows, n, 2, 64))                      # [.., 2, 128]
    qh = blocks[..., 128:192].reshape(rows, n, 2, 1, 32) >> np.array([0, 2, 4, 6], np.uint8).reshape(4, 1)
    q = low | ((qh & 3).reshape(rows, n, 2, 128) << 4)
    scales = blocks[..., 192:208].copy().view(np.int8).astype(np.float32)           # per 16 weights
    scale = (_f16(blocks[..., 208:210]) * scales).astype(np.float16)
    q = (q.astype(np.int16) - 32).astype(np.int8)
    return q.reshape(rows, -1, 16), None, scale.reshape(rows, -1, 1)
