"""`ovchat export FILE.gguf OUT --preset gguf` (tools/gguf_native.py): the file's Q4_0, Q4_1, Q5_0,
Q5_1, Q8_0, Q4_K, Q5_K and Q6_K blocks kept as OpenVINO compressed weights instead of dequantized and quantized again. Fast: the
blocks decode to what gguf-py dequantizes, the preset is the default only for the files it keeps,
and what it cannot keep is refused in one line. Slow: a tiny file of those types exports, and
computes what llama.cpp computes on the same file."""

import json
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest

from ovchat.tools import gguf_native
from ovchat.tools.export_cli import default_preset, recipe_from_args
from ovchat.tools.recipe import PRESETS

import gguf_fixtures
from test_model_files import gguf_bytes


def _blocks(kind: str, rows: int, cols: int, rng):
    """Raw blocks of `kind`: gguf-py's quantizer where it has one, else random bytes with small
    f16 super-block scales (any other byte is a valid K-quant block), as the fixtures write them."""
    import gguf

    qtype = gguf.GGMLQuantizationType[kind]
    if kind in gguf_fixtures._K_SCALES:
        size = gguf.GGML_QUANT_SIZES[qtype][1]
        raw = rng.integers(0, 256, size=(rows, cols // 256, size), dtype=np.uint8)
        for offset in gguf_fixtures._K_SCALES[kind]:
            raw[..., offset:offset + 2] = np.frombuffer(np.float16(rng.uniform(1e-5, 1e-3)).tobytes(), np.uint8)
        if kind in ("Q4_K", "Q5_K"):
            raw[0, 0, 4:16] = 0   # every sub-scale and min 0: w = 0 for a whole super-block
        return raw.reshape(rows, -1)
    weights = (rng.standard_normal((rows, cols)) * 0.05).astype(np.float32)
    weights[3, 32:64] = 0.02  # a constant block: Q4_1's and Q5_1's scale is 0 there
    return gguf.quants.quantize(weights, qtype)


def _assert_decodes_as_gguf_py(kind: str, raw, rows: int, cols: int) -> None:
    import gguf

    expected = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType[kind]).reshape(rows, cols)
    q, zero, scale = gguf_native.decode_blocks(kind, raw, rows, cols)
    assert q.dtype == (np.int8 if kind in ("Q5_0", "Q6_K", "Q8_0") else np.uint8)
    assert q.shape == (rows, q.shape[1], 16 if kind == "Q6_K" else 32) and scale.shape == (*q.shape[:2], 1)
    low, high = {"Q5_0": (-16, 15), "Q6_K": (-32, 31), "Q8_0": (-128, 127), "Q5_1": (0, 31), "Q5_K": (0, 31)}.get(kind, (0, 15))
    assert low <= q.min() and q.max() <= high  # u4 types fit u4; 5- and 6-bit ones their range
    z = zero.astype(np.float32) if zero is not None else 0
    got = ((q.astype(np.float32) - z) * scale.astype(np.float32)).reshape(rows, cols)
    if kind in ("Q4_0", "Q5_0", "Q8_0"):
        assert np.array_equal(got, expected)
    else:  # a scale product d*sc and a zero point rounded to f16 (2^-11 each): nothing more
        bound = 2.0 ** -11 * ((np.abs(q) + np.abs(z)) * np.abs(scale.astype(np.float32))).reshape(rows, cols)
        assert np.all(np.abs(got - expected) <= 1.01 * bound + 1e-9)


@pytest.mark.parametrize("kind", gguf_native.KEPT_TYPES)
def test_the_kept_blocks_decode_to_what_gguf_py_dequantizes(kind):
    _assert_decodes_as_gguf_py(kind, _blocks(kind, 8, 512, np.random.default_rng(0)), 8, 512)


@pytest.mark.slow
@pytest.mark.named_model
def test_every_matrix_of_the_real_gemma_3_270m_decodes_to_what_gguf_py_dequantizes():
    import gguf as gguf_py

    from ovchat.tools import named_models

    seen = set()
    for tensor in gguf_py.GGUFReader(str(named_models.fetch("gemma3-270m"))).tensors:
        if tensor.tensor_type.name == "F32":
            continue
        cols, rows = (int(x) for x in tensor.shape[:2])
        raw = np.asarray(tensor.data)[:8192]  # the 262,144-row embedding: its first rows
        _assert_decodes_as_gguf_py(tensor.tensor_type.name, raw, min(rows, 8192), cols)
        seen.add(tensor.tensor_type.name)
    assert seen == {"Q5_0", "Q4_K", "Q6_K", "Q8_0"}


def _header(tmp_path, *kinds) -> Path:
    path = tmp_path / "m.gguf"
    path.write_bytes(gguf_bytes({"general.architecture": (8, "llama")}, [(f"t{i}.weight", k) for i, k in enumerate(kinds)]))
    return path


def _args(**given):
    """`ovchat export`'s parsed flags, none given but `given`."""
    return Namespace(**{"preset": None, "task": None, "weight_format": None, "group_size": None, "ratio": None,
                        "sym": None, "trust_remote_code": False, **given})


def test_a_gguf_of_kept_types_defaults_to_the_gguf_preset_anything_else_to_the_seed(tmp_path, capsys):
    Q4_0, Q4_1, Q8_0, F32, F16, Q3_K, Q4_K, Q5_0, Q6_K = 2, 3, 8, 0, 1, 11, 12, 6, 14
    kept = _header(tmp_path, Q4_0, Q4_1, Q8_0, F32, F16, Q4_K, Q5_0, Q6_K)
    assert recipe_from_args(_args(), kept) == PRESETS["gguf"]
    assert "--preset seed quantizes again" in capsys.readouterr().err
    assert recipe_from_args(_args(preset="seed"), kept) == PRESETS["seed"]
    assert recipe_from_args(_args(ratio=0.8), kept).preset == "seed"       # recipe flags: the seed's recipe they change
    (tmp_path / "k").mkdir()
    assert default_preset(_header(tmp_path / "k", Q4_1, Q3_K), {}) == "seed"
    assert default_preset(tmp_path, {}) == "seed" and default_preset(None, {}) == "seed"
    for arch, preset in (("gemma3", "gguf"), ("phi3", "gguf"), ("mamba", "seed")):
        other = tmp_path / f"{arch}.gguf"
        other.write_bytes(gguf_bytes({"general.architecture": (8, arch)}, [("t.weight", Q4_K)]))
        assert default_preset(other, {}) == preset, arch


def test_what_the_preset_cannot_keep_is_refused_in_one_line(tmp_path):
    from ovchat.tools.export import ExportError, export

    with pytest.raises(ExportError) as error:
        export(_header(tmp_path, 3, 11), tmp_path / "out", PRESETS["gguf"])
    assert "\n" not in str(error.value) and "tensor type Q3_K" in str(error.value) and "--preset seed" in str(error.value)
    (tmp_path / "hf").mkdir()
    with pytest.raises(ExportError, match="keeps a GGUF file's own quantization"):
        export(tmp_path / "hf", tmp_path / "out2", PRESETS["gguf"])


def test_the_manifest_says_nothing_was_quantized():
    recorded = PRESETS["gguf"].to_manifest(128)
    assert recorded["keep_gguf"] and recorded["preset"] == "gguf" and "group_size" not in recorded


# Byte-level BPE files (no BOS) and SentencePiece ones; together every kept layout: Llama's
# permuted q/k rows, Phi-3's fused qkv and gate-up, Gemma's tied embedding.
BPE_FAMILIES = ["llama-smollm", "qwen2", "qwen3"]
KEPT_FAMILIES = BPE_FAMILIES + ["gemma2", "gemma3", "phi3"]


@pytest.fixture(scope="module")
def kept(request):
    """(GGUF of family request.param with only kept types, its `--preset gguf` export), cached."""
    from ovchat.engine import cache_root
    from ovchat.tools import default_model
    from ovchat.tools.export import export, is_valid_export

    root = cache_root() / "test-models"
    gguf = gguf_fixtures.cached_gguf(request.param, root, default_model.fetch_gguf(), subset="kept")
    out = root / f"{gguf.stem}-ov-{gguf_fixtures.EXPORT_VERSION}"
    if not is_valid_export(out):
        export(gguf, out, PRESETS["gguf"], force=True)
    return gguf, out


@pytest.mark.slow
@pytest.mark.default_model
@pytest.mark.parametrize("kept", KEPT_FAMILIES, indirect=True)
def test_a_kept_export_computes_what_llama_cpp_computes_on_the_same_file(kept):
    """The file's blocks kept (every type of gguf_blocks, in each family's layout): the exported
    model's logits are llama.cpp's (cosine > 0.999 at every position, as the float conversion's)."""
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python (the bench extra) is the reference")
    import gguf as gguf_py

    from ovchat.tools.fidelity import export_logits

    gguf, out = kept
    manifest = json.loads((out / "ovchat.json").read_text())
    file_types = [t.tensor_type.name for t in gguf_py.GGUFReader(str(gguf)).tensors]
    quantized = [t for t in file_types if t in gguf_native.KEPT_TYPES]
    assert manifest["recipe"]["preset"] == "gguf"
    assert set(manifest["source"]["gguf"]["gguf_tensor_types"]) == set(file_types)
    assert len(set(quantized)) >= 7  # the fixture hands every kept type out in turn (phi3: 8 matrices)
    kept_blocks = manifest["source"]["gguf"]["kept_blocks"]
    assert kept_blocks == {kind: quantized.count(kind) for kind in set(quantized)}  # every quantized matrix, once
    reference = llama_cpp.Llama(str(gguf), n_ctx=64, logits_all=True, verbose=False, n_threads=1)
    ids = reference.tokenize(b"The quick brown fox jumps over the lazy dog. Hello world, 42!", add_bos=False)[:24]
    reference.eval(ids)
    expected = np.array(reference.scores[:len(ids)])
    logits = export_logits(out, ids)
    cosines = [a @ b / np.linalg.norm(a) / np.linalg.norm(b) for a, b in zip(expected, logits)]
    assert min(cosines) > 0.999, min(cosines)


@pytest.mark.slow
@pytest.mark.default_model
@pytest.mark.parametrize("kept", BPE_FAMILIES, indirect=True)
def test_the_manifest_records_the_agreement_with_llama_cpp(kept):
    """Teacher-forced top-1 over fidelity's text: 0.931, 0.965 and 0.969 measured on these three
    (2026-12-07; the seed's recipe on the same random weights gives 0.64-0.66, the near-uniform
    predictions of random weights tip on near-ties), so 0.85 holds with margin."""
    pytest.importorskip("llama_cpp", reason="the export records the agreement only with llama-cpp-python")
    _, out = kept
    record = json.loads((out / "ovchat.json").read_text())["fidelity"]["llama_cpp"]
    assert 0.85 <= record["top1_agreement"] <= 1, record
    assert record["tokens"] > 250 and record["same_ids"] and not record["bos"]  # byte-level BPE files add no BOS
    assert record["llama_cpp_version"]


@pytest.mark.slow
@pytest.mark.named_model
def test_the_real_gemma_3_270m_keeps_its_q4_k_m_blocks_and_follows_llama_cpp():
    """Gemma 3 270M's Q4_K_M file (Q5_0, Q4_K, Q6_K, Q8_0; tied embedding) with --preset gguf: every
    quantized matrix kept, and llama.cpp's next token at >= 0.85 of the positions of fidelity's
    text (llama.cpp's ids, BOS first): measured 0.936, where the seed's recipe gives 0.740 and the
    float model 0.943 (studies/results/2026-12-07-gguf-kquant/)."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python (the bench extra) is the reference")
    import gguf as gguf_py

    from conftest import _build_once, _models_root
    from ovchat.tools import llama_cpp_agreement as agreement, named_models
    from ovchat.tools.export import export
    from ovchat.tools.fidelity import export_logits

    gguf = named_models.fetch("gemma3-270m")
    out = _build_once(_models_root() / "gemma3-270m-kept-ov-v1",
                      lambda out: export(gguf, out, PRESETS["gguf"], check=False, kind="gemma3-270m"))
    quantized = [t.tensor_type.name for t in gguf_py.GGUFReader(str(gguf)).tensors if t.tensor_type.name != "F32"]
    manifest = json.loads((out / "ovchat.json").read_text())
    assert manifest["recipe"]["preset"] == "gguf"
    assert manifest["source"]["gguf"]["kept_blocks"] == {kind: quantized.count(kind) for kind in set(quantized)}
    ids, bos = agreement.reference_ids(gguf)
    assert bos
    measured = agreement.top1_agreement(agreement.reference_top1(gguf, ids), export_logits(out, ids))
    assert measured >= 0.85, measured
