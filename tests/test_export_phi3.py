"""Real exports of tiny random models (the Phi-3 architecture path): files, manifest, chat
template, stop tokens, the group-size fallback and a failing fidelity check."""

import json

import openvino_genai as ov_genai
import pytest

from ovchat.tools import fidelity
from ovchat.tools.export import EXPORTED_FILES, ExportError, export
from ovchat.tools.recipe import Recipe

from conftest import build_tiny_phi3_source

pytestmark = pytest.mark.slow


def test_the_tiny_phi3_export_holds_what_optimum_writes_and_a_manifest(tiny_phi3_dir, tiny_phi3_source):
    for name in EXPORTED_FILES:
        assert (tiny_phi3_dir / name).is_file(), name
    manifest = json.loads((tiny_phi3_dir / "ovchat.json").read_text())
    assert manifest["source"]["kind"] == "hf" and manifest["source"]["path"] == str(tiny_phi3_source)
    assert len(manifest["source"]["sha256"]) == 64
    assert manifest["recipe"] == {"task": "text-generation-with-past", "weight_format": "int4", "sym": True,
                                  "group_size": 128, "group_size_requested": 128, "ratio": 0.6,
                                  "trust_remote_code": False, "all_layers": False, "awq": False,
                                  "scale_estimation": False, "gptq": False, "preset": "seed", "keep_gguf": False}
    assert manifest["versions"]["openvino"] and manifest["versions"]["nncf"] and manifest["versions"]["optimum-intel"]
    figures = manifest["fidelity"]
    assert figures["passed"] and 0.9 < figures["perplexity_ratio"] < 1.1 and figures["text_tokens"] > 100


def test_the_tiny_phi3_export_is_int4_with_groups_of_128(tiny_phi3_dir):
    import openvino as ov

    model = ov.Core().read_model(tiny_phi3_dir / "openvino_model.xml")
    int4 = [op for op in model.get_ops() if op.get_type_name() == "Constant" and op.get_element_type() == ov.Type.i4]
    assert int4, "no int4 weights in the exported model"
    assert all(op.get_output_shape(0)[-1] == 128 for op in int4)


def test_the_tiny_phi3_export_renders_the_phi3_template(tiny_phi3_dir):
    tokenizer = ov_genai.Tokenizer(str(tiny_phi3_dir))
    history = ov_genai.ChatHistory()
    history.append({"role": "system", "content": "You are a helpful AI assistant."})
    history.append({"role": "user", "content": "can you introduce yourself?"})
    prompt = tokenizer.apply_chat_template(history, add_generation_prompt=True)
    assert prompt == ("<|system|>\nYou are a helpful AI assistant.<|end|>\n"
                      "<|user|>\ncan you introduce yourself?<|end|>\n<|assistant|>\n")


def test_the_tiny_phi3_export_stops_on_end(tiny_phi3_dir):
    tokenizer = ov_genai.Tokenizer(str(tiny_phi3_dir))
    end_id = int(tokenizer.encode("<|end|>", add_special_tokens=False).input_ids.data[0][-1])
    endoftext_id = int(tokenizer.encode("<|endoftext|>", add_special_tokens=False).input_ids.data[0][-1])
    eos = json.loads((tiny_phi3_dir / "generation_config.json").read_text())["eos_token_id"]
    assert sorted(eos) == sorted([end_id, endoftext_id])
    pipeline = ov_genai.LLMPipeline(str(tiny_phi3_dir), "CPU")
    assert {end_id, endoftext_id} <= set(pipeline.get_generation_config().stop_token_ids)


def test_a_hidden_size_that_128_does_not_divide_falls_back_and_says_so(tmp_path, capsys):
    src = tmp_path / "src"
    build_tiny_phi3_source(src, hidden=96, intermediate=192)
    manifest = export(src, tmp_path / "out", check=False)
    assert manifest["recipe"]["group_size"] == 32 and manifest["recipe"]["group_size_requested"] == 128
    assert manifest["fidelity"] == {"skipped": True}
    assert "using 32" in capsys.readouterr().err


def test_a_failing_fidelity_check_writes_nothing(tiny_phi3_source, tmp_path, monkeypatch):
    # Demand an impossible perplexity ratio: the real measurement must then fail the export.
    monkeypatch.setitem(fidelity.THRESHOLD, "perplexity_ratio_max", 0.5)
    with pytest.raises(ExportError, match="FIDELITY CHECK FAILED.*ratio"):
        export(tiny_phi3_source, tmp_path / "out", recipe=Recipe(weight_format="int8"))
    assert list(tmp_path.iterdir()) == []

