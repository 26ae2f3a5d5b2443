"""A GGUF run directly (`Engine.load("file.gguf")`, `ovchat serve -m file.gguf`): openvino_genai's own
reader builds the graph and the tokenizer from the file. It runs the llama, qwen2 and qwen3
architectures with F32, F16, Q4_0, Q4_1, Q8_0, Q4_K and Q6_K tensors, and its tokenizer is
llama.cpp's only for byte-level BPE with the smollm and qwen2 pre-tokenizers (engine/gguf_meta.py):
tiny files of each kind (tests/gguf_fixtures.py, only those tensor types) load and generate, and
tokenize as llama.cpp does; the kinds it gets wrong are refused in one line naming `ovchat export`,
and the tests below show why (the day genai tokenizes them right, the refusal test fails: lift it)."""

from pathlib import Path

import pytest

import gguf_fixtures

pytestmark = [pytest.mark.slow, pytest.mark.default_model]  # the byte-level files copy the default model's vocabulary

RUNS = ("llama-smollm", "qwen2", "qwen3")          # genai's tokenizer is llama.cpp's on every string
REFUSED = {"llama3": 204, "llama-gpt2": 211}       # byte-level BPE, other pre-tokenizers: strings equal of 252


def _gguf(name: str) -> Path:
    from ovchat.engine import cache_root
    from ovchat.tools import default_model

    bpe = gguf_fixtures.FAMILIES[name].vocab == "bpe"
    return gguf_fixtures.cached_gguf(name, cache_root() / "test-models", default_model.fetch_gguf() if bpe else None,
                                     subset="direct")


def _different(tokenizer_encode, gguf: Path) -> list:
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python (the bench extra) is the reference")
    reference = llama_cpp.Llama(str(gguf), vocab_only=True, verbose=False)
    return [text for text in gguf_fixtures.corpus()
            if tokenizer_encode(text) != reference.tokenize(text.encode(), add_bos=False, special=True)]


@pytest.mark.parametrize("name", RUNS)
def test_a_file_genai_reads_loads_generates_and_tokenizes_as_llama_cpp(name):
    from ovchat import engine

    gguf = _gguf(name)
    model = engine.Engine.load(gguf, device="CPU")
    assert model.info.format == "gguf" and model.info.architecture == gguf_fixtures.FAMILIES[name].arch
    result = model.generate("Hello", engine.GenerationOptions(max_new_tokens=6, ignore_eos=True))
    assert result.output_tokens == 6 and result.finish_reason == "length"
    assert model.tokenizer.chat_template == gguf_fixtures.FAMILIES[name].template
    assert _different(lambda text: model.tokenizer.encode(text, add_special_tokens=False), gguf) == []


def test_the_default_models_file_tokenizes_as_llama_cpp_when_run_directly():
    from ovchat import engine
    from ovchat.tools import default_model

    gguf = default_model.fetch_gguf()
    model = engine.Engine.load(gguf, device="CPU", warmup=False)
    assert _different(lambda text: model.tokenizer.encode(text, add_special_tokens=False), gguf) == []  # 252/252


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_pre_tokenizer_genai_gets_wrong_is_refused_and_it_does_get_it_wrong(name):
    import openvino_genai as ov_genai

    from ovchat import engine

    gguf = _gguf(name)
    with pytest.raises(engine.ModelError, match=f"`ovchat export {gguf} OUT`"):
        engine.Engine.load(gguf)
    tokenizer = ov_genai.LLMPipeline(str(gguf), "CPU").get_tokenizer()  # what loading it anyway would tokenize with
    encode = lambda text: tokenizer.encode(text, add_special_tokens=False).input_ids.data[0].tolist() if text else []  # noqa: E731
    assert 252 - len(_different(encode, gguf)) == REFUSED[name]


def test_a_sentencepiece_file_is_refused_and_genai_cannot_read_it():
    import openvino_genai as ov_genai

    from ovchat import engine

    gguf = _gguf("mistral-spm")
    with pytest.raises(engine.ModelError, match="'llama' vocabulary"):
        engine.Engine.load(gguf)
    with pytest.raises(Exception, match="map::at"):
        ov_genai.LLMPipeline(str(gguf), "CPU")
