"""The second real model: Gemma 3 270M (`ovchat export gemma3-270m`), exported from its registry GGUF
with the seed's recipe. The file has no chat template: the export gives it Gemma's turn format and
records that. It is a base model: its raw greedy completions are compared with llama.cpp's on the
same file (the first token of each prompt)."""

import json

import pytest

pytestmark = pytest.mark.named_model

VERSION = "v4"  # bump when the export of this model changes: the cached export is rebuilt (v4: tokenizer fixes, llama.cpp agreement)
PROMPTS = ["The capital of France is", "Water boils at a temperature of", "The first president of the United States was",
           "def fibonacci(n):", "Once upon a time, there was a", "The largest planet in the solar system is"]


@pytest.fixture(scope="module")
def gemma3():
    from conftest import _build_once, _models_root

    from ovchat.tools import named_models
    from ovchat.tools.export import export

    root = _models_root()
    root.mkdir(parents=True, exist_ok=True)
    gguf = named_models.fetch("gemma3-270m")
    return gguf, _build_once(root / f"gemma3-270m-ov-{VERSION}", lambda out: export(gguf, out, kind="gemma3-270m"))


def test_the_export_records_the_file_the_recipe_and_the_family_template(gemma3):
    _, out = gemma3
    manifest = json.loads((out / "ovchat.json").read_text())
    assert manifest["source"]["kind"] == "gemma3-270m"
    assert manifest["source"]["sha256"] == "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    assert manifest["source"]["gguf"]["architecture"] == "gemma3_text"
    assert manifest["source"]["gguf"]["chat_template"] == "family:gemma"
    assert manifest["recipe"]["preset"] == "seed"
    assert manifest["tokenizer_fixes"] == ["encoder", "decoder"]  # tools/ov_tokenizer_fixes.py
    assert 0.5 < manifest["fidelity"]["top1_agreement"] <= 1


def test_the_manifest_records_the_agreement_with_llama_cpp(gemma3):
    """Teacher-forced top-1 over fidelity's text, BOS first as the file asks: 0.740 measured
    (2026-12-07, studies/results/2026-12-07-gemma3-agreement/)."""
    pytest.importorskip("llama_cpp", reason="the export records the agreement only with llama-cpp-python")
    _, out = gemma3
    record = json.loads((out / "ovchat.json").read_text())["fidelity"]["llama_cpp"]
    assert 0.65 <= record["top1_agreement"] <= 1 and record["tokens"] > 250, record
    assert record["bos"] and record["same_ids"]


def test_the_family_template_renders_gemmas_turns_in_the_engine(gemma3):
    from ovchat import engine
    from ovchat.tools.family_templates import GEMMA

    _, out = gemma3
    model = engine.Engine.load(out, device="CPU")
    assert model.tokenizer.chat_template == GEMMA
    text = model.tokenizer.apply_chat_template([{"role": "system", "content": "Be brief."},
                                                {"role": "user", "content": "Hi"}])
    assert text == "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
    assert model.tokenizer.encode("<end_of_turn>", add_special_tokens=False)[0] in model.info.eos_token_ids


def test_raw_greedy_completions_begin_as_llama_cpps_on_the_same_file(gemma3):
    from ovchat import engine

    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python (the bench extra) is the reference")
    gguf, out = gemma3
    reference = llama_cpp.Llama(str(gguf), n_ctx=256, verbose=False, n_threads=2)
    model = engine.Engine.load(out, device="CPU", batching=True)  # per-token ids: logprobs=True
    options = engine.GenerationOptions(max_new_tokens=1, ignore_eos=True, apply_chat_template=False, logprobs=True)
    same = 0
    for prompt in PROMPTS:
        ids = reference.tokenize(prompt.encode(), add_bos=True)
        expected = next(reference.generate(ids, temp=0.0, top_k=1))
        reference.reset()
        same += model.generate(prompt, options).tokens[0].id == expected
    assert same >= len(PROMPTS) - 2, f"first greedy token equal to llama.cpp's on {same} of {len(PROMPTS)} prompts"
