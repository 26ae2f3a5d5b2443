"""Every GGUF family ovchat imports, without downloads: the tiny file tests/gguf_fixtures.py writes
for each (random weights in the architecture's layout, every supported tensor type, a vocabulary
of the family's kind) exports with the seed's recipe through `tools.export`, loads, generates,
keeps its chat template and stop tokens, and tokenizes as llama.cpp does.

Gemma 2 and 3 export through tools/optimum_cli.py's lifted ceiling. A file without a chat template
gets its family's turn format where its vocabulary has the markers (tools/family_templates.py)."""

import json
from pathlib import Path

import pytest

import gguf_fixtures

pytestmark = pytest.mark.slow

EXPORTED = {  # family -> transformers' model_type of the export
    "llama3": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "mistral-spm": "llama", "phi3": "phi3",
    "gemma2": "gemma2", "gemma3": "gemma3_text",
}
_NEEDS_DEFAULT = pytest.mark.default_model  # byte-level BPE files copy the default model's vocabulary
FAMILIES = [pytest.param(name, marks=_NEEDS_DEFAULT) if gguf_fixtures.FAMILIES[name].vocab == "bpe" else name
            for name in EXPORTED]


def _root() -> Path:
    from ovchat.engine import cache_root

    return cache_root() / "test-models"


@pytest.fixture(scope="module")
def family(request):
    """(name, GGUF path, exported folder or the GgufError that refused it)."""
    from ovchat.tools import default_model
    from ovchat.tools.export import export, is_valid_export
    from ovchat.tools.gguf_convert import GgufError

    name = request.param
    bpe = gguf_fixtures.FAMILIES[name].vocab == "bpe"
    gguf = gguf_fixtures.cached_gguf(name, _root(), default_model.fetch_gguf() if bpe else None)
    out = _root() / f"{gguf.stem}-ov-{gguf_fixtures.EXPORT_VERSION}"
    if not is_valid_export(out):
        try:
            export(gguf, out, force=True)
        except GgufError as refused:
            return name, gguf, refused
    return name, gguf, out


def _exported(family):
    name, gguf, out = family
    if isinstance(out, Exception):
        pytest.skip(f"{name}: not exportable with this install: {out}")
    return name, gguf, out


def test_an_architecture_optimum_intel_refuses_is_refused_in_one_line_before_converting(monkeypatch):
    from ovchat.tools import gguf_convert

    monkeypatch.setitem(gguf_convert.HF_MODEL_TYPES, "gemma3", "gemma3n_text")  # a ceiling tools/optimum_cli keeps
    message = gguf_convert.unexportable("gemma3")
    assert message.count("\n") == 0 and "architecture 'gemma3' converts, but optimum-intel" in message
    assert "<= 5.0 (installed: 5." in message and "cannot be exported with this install" in message


@pytest.mark.parametrize("name, template_from, template", [
    ("gemma3-bare", "family:gemma", "gemma"), ("mistral-spm-bare", None, None)])
def test_a_file_without_a_chat_template_gets_its_familys_where_the_vocabulary_has_its_markers(
        name, template_from, template, tmp_path):
    from transformers import AutoTokenizer

    from ovchat.tools import family_templates, gguf_convert

    gguf = gguf_fixtures.cached_gguf(name, _root(), None)
    summary = gguf_convert.convert(gguf, tmp_path)
    assert summary["chat_template"] == template_from
    if template is None:
        assert not (tmp_path / "chat_template.jinja").exists()
        return
    assert (tmp_path / "chat_template.jinja").read_text() == family_templates.FORMATS[template][0]
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi "},
                {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye"}]
    text = AutoTokenizer.from_pretrained(str(tmp_path)).apply_chat_template(messages, tokenize=False,
                                                                              add_generation_prompt=True)
    assert text == ("<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n"
                    "<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n")


@pytest.mark.parametrize("family", FAMILIES, indirect=True)
def test_the_manifest_records_the_architecture_and_every_tensor_type(family):
    name, gguf, out = _exported(family)
    source = json.loads((out / "ovchat.json").read_text())["source"]
    assert source["gguf"]["architecture"] == EXPORTED[name]
    written = {"F32", "Q8_0", *gguf_fixtures.MATRIX_TYPES[:len(source["gguf"]["gguf_tensor_types"]) - 1]}
    assert set(source["gguf"]["gguf_tensor_types"]) == written


@pytest.mark.parametrize("family", FAMILIES, indirect=True)
def test_the_export_loads_and_generates(family):
    from ovchat import engine

    _, _, out = _exported(family)
    model = engine.Engine.load(out, device="CPU")
    result = model.generate("Hello", engine.GenerationOptions(max_new_tokens=6, ignore_eos=True))
    assert result.output_tokens == 6 and result.finish_reason == "length"
    chat = model.chat().send("Hi", engine.GenerationOptions(max_new_tokens=4))
    assert 1 <= chat.output_tokens <= 4


@pytest.mark.parametrize("family", FAMILIES, indirect=True)
def test_the_export_keeps_the_chat_template_and_the_stop_tokens(family):
    from ovchat import engine
    from ovchat.tools import gguf_convert

    name, gguf, out = _exported(family)
    vocab = gguf_convert.read_vocab(gguf_convert.read_gguf(gguf))
    model = engine.Engine.load(out, device="CPU")
    assert model.tokenizer.chat_template == gguf_fixtures.FAMILIES[name].template
    assert "Hi" in model.tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}])
    assert sorted(model.info.eos_token_ids) == vocab.stop_token_ids()
    if name == "qwen3":  # the decoding the file recommends
        assert model.info.decoding == {"do_sample": True, "temperature": pytest.approx(0.6), "top_k": 20,
                                       "top_p": pytest.approx(0.95)}
    else:
        assert model.info.decoding == {}
    if name in ("phi3", "gemma2", "gemma3"):  # their end-of-turn token stops the answer too
        ends = {"phi3": "<|end|>", "gemma2": "<end_of_turn>", "gemma3": "<end_of_turn>"}[name]
        assert vocab.tokens.index(ends) in model.info.eos_token_ids


@pytest.mark.parametrize("family", FAMILIES, indirect=True)
def test_the_exported_tokenizer_encodes_as_llama_cpp(family):
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python (the bench extra) is the reference")
    name, gguf, out = _exported(family)
    reference = llama_cpp.Llama(str(gguf), vocab_only=True, verbose=False)
    tokenizer = gguf_fixtures.ovchat_tokenizer(out)
    texts = gguf_fixtures.corpus()
    different = {text for text in texts
                 if tokenizer.encode(text, add_special_tokens=False) != reference.tokenize(text.encode(), add_bos=False, special=True)}
    assert different == set()


@pytest.mark.parametrize("name", [pytest.param(name, marks=_NEEDS_DEFAULT) if gguf_fixtures.FAMILIES[name].vocab == "bpe"
                                  else name for name in EXPORTED])
def test_the_converted_weights_compute_what_llama_cpp_computes(name, tmp_path):
    """The float model gguf_convert writes gives llama.cpp's logits on the same file (llama.cpp
    multiplies by its quantized blocks, so not to the last bit): a tensor mapped or scaled wrong
    (the Gemma query scale transformers defaults to 256 gave 0.997 and 0.916) falls far below."""
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    from ovchat.tools import default_model, gguf_convert

    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python (the bench extra) is the reference")
    bpe = gguf_fixtures.FAMILIES[name].vocab == "bpe"
    gguf = gguf_fixtures.cached_gguf(name, _root(), default_model.fetch_gguf() if bpe else None)
    reference = llama_cpp.Llama(str(gguf), n_ctx=64, logits_all=True, verbose=False, n_threads=1)
    ids = reference.tokenize(b"The quick brown fox jumps over the lazy dog. Hello world, 42!", add_bos=True)[:24]
    reference.eval(ids)
    expected = np.array(reference.scores[:len(ids)])
    gguf_convert.convert(gguf, tmp_path / "float")
    with torch.no_grad():
        model = AutoModelForCausalLM.from_pretrained(str(tmp_path / "float"), dtype=torch.float32)
        logits = model(torch.tensor([ids])).logits[0].numpy()
    cosines = [a @ b / np.linalg.norm(a) / np.linalg.norm(b) for a, b in zip(expected, logits)]
    assert min(cosines) > 0.999, (name, min(cosines))


@pytest.mark.named_model
def test_the_real_gemma3_file_converts_to_llama_cpps_logits(tmp_path):
    """Gemma 3 270M (`ovchat export gemma3-270m`'s file; optimum-intel refuses to export it here, the
    conversion before that is ready): measured top-1 18/19, cosine 0.9993 mean, 0.998 lowest."""
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    from ovchat.tools import gguf_convert, named_models

    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python (the bench extra) is the reference")
    gguf = named_models.fetch("gemma3-270m")
    reference = llama_cpp.Llama(str(gguf), n_ctx=128, logits_all=True, verbose=False, n_threads=2)
    ids = reference.tokenize(b"The capital of France is Paris. The largest planet in the solar system is Jupiter, and",
                             add_bos=True)
    reference.eval(ids)
    expected = np.array(reference.scores[:len(ids)])
    gguf_convert.convert(gguf, tmp_path / "float")
    with torch.no_grad():
        model = AutoModelForCausalLM.from_pretrained(str(tmp_path / "float"), dtype=torch.float32)
        logits = model(torch.tensor([ids])).logits[0].numpy()
    cosines = [a @ b / np.linalg.norm(a) / np.linalg.norm(b) for a, b in zip(expected, logits)]
    assert np.mean(cosines) > 0.998 and min(cosines) > 0.995
    assert (expected.argmax(-1) == logits.argmax(-1)).mean() >= 0.9
