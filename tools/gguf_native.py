"""The `gguf` export preset: a GGUF's own quantized blocks kept, not dequantized and quantized again.

The model is exported from the dequantized float model like any other (optimum-intel, weights
fp16, so the graph, its names and its inputs are the usual ones), then every matrix the file holds
in a type of tools/gguf_blocks.py (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K) is put back as
the file's blocks, each weight decompressed on the fly as OpenVINO's compressed weights are
(Convert, Subtract zero point, Multiply scale), group 32 (Q6_K: 16): 4-bit integers as u4, 5-bit
as u8 or i8, 6- and 8-bit as i8, one f16 scale (and zero point) per group. Q4_0, Q5_0 and Q8_0 are
exact; the others within f16 rounding of a scale product or zero point (gguf_blocks' table).

F32/F16/BF16 tensors stay as the fp16 export has them. Other types (Q2_K, Q3_K, IQ*) are refused:
use the seed's recipe for those files. Why not openvino_genai's own GGUF reader's graph
(`enable_save_ov_model`): on the default model its Q4_1 weights are not the file's (its u4 zero
points are rounded to integers): top-1 agreement with the float model 0.789, perplexity ratio 1.267,
no better than the seed's recipe (docs/export.md).
"""

from pathlib import Path

import numpy as np

from ..engine.gguf_meta import read_header
from . import gguf_blocks

KEPT_TYPES = gguf_blocks.TYPES
U4_TYPES = ("Q4_0", "Q4_1", "Q4_K")     # the others' integers go in a byte (u8, or i8 where signed)
# Where the kept blocks are checked against llama.cpp (tests/test_gguf_kept.py). Gemma's norms
# (stored +1) and scaled embedding are the float model's business; its embedding is also its
# output layer, one constant in the graph, kept once. Phi-3's fused qkv and gate-up matrices are
# fused alike in transformers' model, rows in the file's order.
KEPT_ARCHITECTURES = ("llama", "qwen2", "qwen3", "gemma2", "gemma3", "phi3")
PLAIN_TYPES = ("F32", "F16", "BF16")
# Architectures whose GGUF converter permutes the rows of attn_q/attn_k (llama.cpp's rotary layout);
# transformers' loader undoes it, and so must the kept blocks.
_PERMUTED = ("llama",)


def problem(gguf_path: Path) -> str | None:
    """Why this file's blocks cannot be kept, as a phrase; None when they can."""
    metadata, types = read_header(gguf_path)
    arch = metadata.get("general.architecture")
    if arch not in KEPT_ARCHITECTURES:
        return f"architecture '{arch}' (it keeps the blocks of {', '.join(KEPT_ARCHITECTURES)})"
    odd = sorted(set(types) - set(KEPT_TYPES) - set(PLAIN_TYPES))
    if odd:
        return f"tensor type {', '.join(odd)} (it keeps {', '.join(KEPT_TYPES)}; {', '.join(PLAIN_TYPES)} go as fp16)"
    return None


def decode_blocks(kind: str, raw: np.ndarray, rows: int, cols: int) -> tuple:
    """(q, zero point or None, scale) of a tensor's raw blocks (tools/gguf_blocks.py)."""
    return gguf_blocks.decode(kind, raw, rows, cols)


def _row_order(name: str, arch: str, rows: int, heads: int, kv_heads: int):
    """The row permutation transformers' loader applies to this tensor (None: rows as in the file)."""
    if arch not in _PERMUTED or not (".attn_q." in name or ".attn_k." in name):
        return None
    n = heads if ".attn_q." in name else kv_heads
    return np.arange(rows).reshape(n, rows // n // 2, 2).swapaxes(2, 1).reshape(rows)


def _u4(values: np.ndarray):
    """An OpenVINO u4 tensor of `values` (0..15): two to a byte, the first in the low nibble."""
    import openvino as ov

    flat = values.reshape(-1)
    flat = np.concatenate([flat, np.zeros(flat.size % 2, np.uint8)])
    tensor = ov.Tensor(ov.Type.u4, list(values.shape))  # owns its memory (one made over an array only borrows it)
    tensor.data[:] = flat[0::2] | (flat[1::2] << 4)
    return tensor


def _decompressed(q, zero, scale, shape, u4: bool):
    from openvino import opset13 as ops

    weight = ops.convert(ops.constant(_u4(q) if u4 else q), "f16")
    if zero is not None:
        weight = ops.subtract(weight, ops.convert(ops.constant(_u4(zero)), "f16") if zero.dtype == np.uint8
                              else ops.constant(zero))
    weight = ops.multiply(weight, ops.constant(scale))
    return ops.reshape(weight, ops.constant(np.array(shape, dtype=np.int64)), special_zero=False)


def keep_blocks(gguf_path: Path, model_dir: Path) -> dict:
    """Put the file's quantized blocks into the fp16 export in `model_dir` (rewritten in
    place); returns {GGUF type: matrices kept}."""
    import gguf
    import openvino as ov

    reader = gguf.GGUFReader(str(gguf_path))
    arch = str(reader.fields["general.architecture"].contents())
    heads = int(reader.fields[f"{arch}.attention.head_count"].contents())
    kv_field = reader.fields.get(f"{arch}.attention.head_count_kv")
    kv_heads = int(kv_field.contents()) if kv_field else heads
    blocks = int(reader.fields[f"{arch}.block_count"].contents())
    names = gguf.get_tensor_name_map(_gguf_arch(arch), blocks)
    tensors = {t.name: t for t in reader.tensors}
    xml = model_dir / "openvino_model.xml"
    model = ov.Core().read_model(xml)
    kept: dict = {}
    for op in model.get_ops():
        # optimum-intel names a weight after its parameter: "self.model.layers.0.mlp.up_proj.weight_compressed"
        hf_name = op.get_friendly_name().removeprefix("self.").removesuffix("_compressed")
        if op.get_type_name() != "Constant" or not hf_name.endswith(".weight"):
            continue
        gguf_name = names.get_name(hf_name.removesuffix(".weight"))
        tensor = tensors.get(f"{gguf_name}.weight") if gguf_name else None
        if tensor is None or tensor.tensor_type.name not in KEPT_TYPES:
            continue
        rows, cols = (int(x) for x in op.get_output_shape(0))
        q, zero, scale = decode_blocks(tensor.tensor_type.name, np.asarray(tensor.data), rows, cols)
        order = _row_order(tensor.name, arch, rows, heads, kv_heads)
        if order is not None:
            q, scale = q[order], scale[order]
            zero = zero[order] if zero is not None else None
        replacement = _decompressed(q, zero, scale, [rows, cols], tensor.tensor_type.name in U4_TYPES)
        if op.get_output_element_type(0) != replacement.get_output_element_type(0):
            from openvino import opset13 as ops
            replacement = ops.convert(replacement, op.get_output_element_type(0))
        for target in list(op.output(0).get_target_inputs()):
            target.replace_source_output(replacement.output(0))
        kept[tensor.tensor_type.name] = kept.get(tensor.tensor_type.name, 0) + 1
    if not kept:
        raise RuntimeError(f"no matrix of {gguf_path.name} was matched to the exported model's weights")
    ov.save_model(model, str(xml.with_name("kept.xml")), compress_to_fp16=False)
    del model
    xml.with_name("kept.xml").replace(xml)
    xml.with_name("kept.bin").replace(xml.with_suffix(".bin"))
    return kept


def _gguf_arch(arch: str):
    import gguf

    return next(key for key, value in gguf.MODEL_ARCH_NAMES.items() if value == arch)
