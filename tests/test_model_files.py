"""Finding and describing models, and refusing broken ones with a message that says what to do."""

import json
import struct

import pytest

from ovchat.engine import Engine, ModelError
from ovchat.engine.gguf_meta import read_header, read_metadata
from ovchat.engine.model import resolve


def gguf_bytes(pairs, tensors=()):
    """A GGUF header: `pairs` {key: (value type, value)}, `tensors` (name, ggml type id) infos (no data)."""
    def string(s):
        b = s.encode()
        return struct.pack("<Q", len(b)) + b
    body = b""
    for key, (kind, value) in pairs.items():
        body += string(key) + struct.pack("<I", kind)
        if kind == 8:
            body += string(value)
        elif kind == 9:  # array of strings
            body += struct.pack("<IQ", 8, len(value)) + b"".join(string(v) for v in value)
        else:
            body += struct.pack({4: "<I", 6: "<f", 7: "<?"}[kind], value)
    for i, (name, kind) in enumerate(tensors):
        body += string(name) + struct.pack("<I2QIQ", 2, 32, 4, kind, 64 * i)
    return b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(pairs)) + body


def test_gguf_header_values_are_read_and_arrays_skipped(tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(gguf_bytes({
        "general.architecture": (8, "llama"),
        "tokenizer.ggml.tokens": (9, ["a", "b", "c"]),
        "llama.context_length": (4, 2048),
        "tokenizer.ggml.eos_token_id": (4, 2),
    }))
    assert read_metadata(path)["tokenizer.ggml.tokens"] == 3
    info = resolve(path)
    assert (info.format, info.architecture, info.context_length, info.eos_token_ids) == ("gguf", "llama", 2048, (2,))


Q4_1, Q8_0, Q5_K, F32, BF16 = 3, 8, 13, 0, 30


def test_the_tensor_types_are_counted_from_the_header(tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(gguf_bytes({"general.architecture": (8, "qwen3"), "tokenizer.ggml.model": (8, "gpt2"),
                                 "tokenizer.ggml.pre": (8, "qwen2")},
                                [("token_embd.weight", Q8_0), ("blk.0.attn_q.weight", Q4_1), ("blk.0.ffn_up.weight", Q4_1),
                                 ("output_norm.weight", F32)]))
    metadata, types = read_header(path)
    assert metadata["general.architecture"] == "qwen3" and types == {"Q8_0": 1, "Q4_1": 2, "F32": 1}
    assert resolve(path).format == "gguf"  # every one of them genai's reader takes


@pytest.mark.parametrize("arch, vocab, kinds, named", [
    ("phi3", ("llama", ""), [Q4_1], "architecture 'phi3' (it runs llama, qwen2, qwen3)"),
    ("gemma3", ("llama", ""), [Q8_0], "architecture 'gemma3'"),
    ("llama", ("gpt2", "smollm"), [Q4_1, Q5_K, BF16],
     "tensor type BF16, Q5_K (it reads F32, F16, Q4_0, Q4_1, Q8_0, Q4_K, Q6_K)"),
    ("llama", ("gpt2", "llama-bpe"), [Q4_1], "byte-level BPE vocabulary with the 'llama-bpe' pre-tokenizer as llama.cpp"),
    ("llama", ("llama", ""), [Q4_1], "'llama' vocabulary as llama.cpp tokenizes it"),
])
def test_a_gguf_genai_cannot_run_is_refused_in_one_line_naming_the_export(tmp_path, arch, vocab, kinds, named):
    path = tmp_path / "m.gguf"
    path.write_bytes(gguf_bytes({"general.architecture": (8, arch), "tokenizer.ggml.model": (8, vocab[0]),
                                 "tokenizer.ggml.pre": (8, vocab[1])}, [(f"t{i}.weight", k) for i, k in enumerate(kinds)]))
    with pytest.raises(ModelError) as error:
        Engine.load(path)
    message = str(error.value)
    assert "\n" not in message and named in message
    assert f"`ovchat export {path} OUT`" in message


def test_a_gguf_run_directly_stops_on_the_ids_its_export_would(tmp_path):
    from ovchat.tools.gguf_convert import GgufVocab, stop_token_ids
    path = tmp_path / "m.gguf"
    path.write_bytes(gguf_bytes({"general.architecture": (8, "llama"), "tokenizer.ggml.eos_token_id": (4, 2),
                                 "tokenizer.ggml.eot_token_id": (4, 7)}))
    vocab = GgufVocab(model="gpt2", tokens=[], merges=[], scores=[], token_types=[], pre="default", bos_id=1, eos_id=2,
                      unk_id=None, pad_id=None, eot_id=7, add_bos=False, add_eos=False, add_space_prefix=False,
                      chat_template=None)
    assert list(resolve(path).eos_token_ids) == stop_token_ids(vocab) == [2, 7]


def test_a_file_that_is_not_gguf_is_refused(tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(ModelError, match="not a GGUF"):
        resolve(path)


def test_a_truncated_gguf_is_refused(tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(gguf_bytes({"general.architecture": (8, "llama")})[:-3])
    with pytest.raises(ModelError, match="complete"):
        resolve(path)


def test_a_missing_model_says_how_to_get_one(tmp_path):
    with pytest.raises(ModelError, match="ovchat export"):
        resolve(tmp_path / "nowhere")


def test_the_default_model_not_prepared_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("OVCHAT_CACHE", str(tmp_path))
    with pytest.raises(ModelError, match="ovchat export default"):
        resolve(None)


def test_a_folder_without_ir_or_tokenizer_lists_what_is_missing(tmp_path):
    (tmp_path / "openvino_model.xml").write_text("<net/>")
    with pytest.raises(ModelError) as error:
        resolve(tmp_path)
    message = str(error.value)
    assert "openvino_model.bin" in message and "openvino_tokenizer.xml" in message
    assert "openvino_model.xml," not in message


def test_a_bad_json_config_is_refused(tmp_path):
    for name in ("openvino_model.xml", "openvino_model.bin", "openvino_tokenizer.xml", "openvino_detokenizer.xml"):
        (tmp_path / name).write_text("x")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        resolve(tmp_path)


def test_a_corrupt_ir_is_a_model_error_not_a_crash(tmp_path):
    for name in ("openvino_model.xml", "openvino_tokenizer.xml", "openvino_detokenizer.xml"):
        (tmp_path / name).write_text("<?xml version='1.0'?><net name='broken'")
    (tmp_path / "openvino_model.bin").write_bytes(b"\0" * 16)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ModelError, match="could not load"):
        Engine.load(tmp_path, warmup=False)


def test_openvino_errors_are_shown_by_their_reason_not_their_source_location():
    from ovchat.engine.errors import reason
    # What genai 2026.4 raised for ATTENTION_BACKEND=PA, KV_CACHE_PRECISION=f32 on a bf16 CPU.
    error = RuntimeError(
        "Exception from src/inference/src/cpp/core.cpp:117:\n"
        "Exception from src/inference/src/dev/plugin.cpp:54:\n"
        "Check 'key_cache_type == ov::element::bf16 && value_cache_type == ov::element::bf16' failed at "
        "/home/jenkins/b/build/dldt/src/plugins/intel_cpu/executor_pa.cpp:2847:\n"
        "expect kvcache type bf16, current: f32 , f32\n\n\n")
    assert reason(error) == "expect kvcache type bf16, current: f32 , f32"
    assert reason(RuntimeError("Exception from src/a.cpp:1:\n")) == "Exception from src/a.cpp:1:"
    assert reason(RuntimeError("template error: bad role\nline 2")) == "template error: bad role"
    assert reason(RuntimeError("")) == "RuntimeError"
