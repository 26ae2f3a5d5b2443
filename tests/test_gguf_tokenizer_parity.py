"""The same ids as llama.cpp: for every GGUF the tests use (the default model's, Gemma 3 270M's
(`ovchat export gemma3-270m`'s file), and the tiny file of each family in tests/gguf_fixtures.py), the tokenizer `ovchat export` makes encodes the
strings of tests/texts/tokenizer_parity.json (252: scripts and languages, numbers, whitespace
runs and tabs, code, emoji, chat-template special tokens, the empty string) to the ids
llama.cpp's own tokenizer gives (llama-cpp-python, vocab_only), and decodes them back.

Two layers are checked: the tokenizer gguf_convert rebuilds (tokenizer.json, run by the
`tokenizers` library) must match llama.cpp on every string; the openvino_tokenizers models made
from it (what ovchat runs, through ovchat.engine's Tokenizer) must too: where openvino_tokenizers
departs from the tokenizer.json it converts, the rebuild (tools/gguf_tokenizer.py) or
tools/ov_tokenizer_fixes.py avoids it. The figures are in docs/export.md ("GGUF files")."""

from pathlib import Path

import pytest

import gguf_fixtures

pytestmark = pytest.mark.slow
llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python (the bench extra) is the reference tokenizer")

CORPUS = gguf_fixtures.corpus()
_NEEDS_DEFAULT = pytest.mark.default_model  # byte-level BPE files copy the default model's vocabulary
FILES = [pytest.param("default", marks=_NEEDS_DEFAULT), pytest.param("gemma3-270m", marks=pytest.mark.named_model)] + [
    pytest.param(name, marks=_NEEDS_DEFAULT) if family.vocab == "bpe" else name
    for name, family in gguf_fixtures.FAMILIES.items() if family.template]  # the bare files repeat a vocabulary


def _root() -> Path:
    from ovchat.engine import cache_root

    return cache_root() / "test-models"


@pytest.fixture(scope="module")
def gguf_file(request):
    from ovchat.tools import default_model, named_models

    name = request.param
    if name == "default":
        return default_model.fetch_gguf()
    if name in named_models.NAMED:
        return named_models.fetch(name)
    family = gguf_fixtures.FAMILIES[name]
    return gguf_fixtures.cached_gguf(name, _root(), default_model.fetch_gguf() if family.vocab == "bpe" else None)


@pytest.fixture(scope="module")
def references(gguf_file):
    """llama.cpp's ids for every string, without and with BOS."""
    reference = llama_cpp.Llama(str(gguf_file), vocab_only=True, verbose=False)
    ids = {text: reference.tokenize(text.encode(), add_bos=False, special=True) for text in CORPUS}
    return {text: (ids[text], reference.tokenize(text.encode(), add_bos=True, special=True)) for text in CORPUS}


@pytest.fixture(scope="module")
def exported(gguf_file):
    folder = _root() / f"{gguf_file.stem}-tokenizer-{gguf_fixtures.EXPORT_VERSION}"
    return gguf_fixtures.cached_tokenizer(gguf_file, folder)


def _different(encode, references, with_bos=False) -> set:
    return {text for text in CORPUS if encode(text) != references[text][with_bos]}


@pytest.mark.parametrize("gguf_file", FILES, indirect=True)
def test_the_rebuilt_tokenizer_encodes_every_string_as_llama_cpp(gguf_file, references, exported):
    from tokenizers import Tokenizer

    rebuilt = Tokenizer.from_file(str(exported / "tokenizer.json"))
    assert _different(lambda text: rebuilt.encode(text, add_special_tokens=False).ids, references) == set()
    assert _different(lambda text: rebuilt.encode(text).ids, references, with_bos=True) == set()


@pytest.mark.parametrize("gguf_file", FILES, indirect=True)
def test_the_exported_tokenizer_encodes_as_llama_cpp(gguf_file, references, exported, request):
    tokenizer = gguf_fixtures.ovchat_tokenizer(exported)
    different = _different(lambda text: tokenizer.encode(text, add_special_tokens=False), references)
    print(f"{request.node.callspec.id}: {len(CORPUS) - len(different)}/{len(CORPUS)} equal")
    assert different == set()
    assert _different(lambda text: tokenizer.encode(text), references, with_bos=True) == set()


@pytest.mark.parametrize("gguf_file", FILES, indirect=True)
def test_the_exported_tokenizer_decodes_the_text_back(gguf_file, references, exported):
    from ovchat.tools import gguf_convert

    vocab = gguf_convert.read_vocab(gguf_convert.read_gguf(gguf_file))
    hidden = {i for i, kind in enumerate(vocab.special_types()) if kind in (2, 3)}  # unknown, control: skipped
    tokenizer = gguf_fixtures.ovchat_tokenizer(exported)
    plain = [text for text in CORPUS if not hidden & set(references[text][0])]
    back = [text for text in plain if tokenizer.decode(references[text][0]) == text]
    assert len(back) >= 200
    # The rest no SentencePiece tokenizer gives back, llama.cpp's included: a "▁" in the text is a space.
    rest = {text for text in plain if text not in back and not (vocab.model == "llama" and "▁" in text)}
    assert rest == set()


@pytest.mark.parametrize("gguf_file", FILES, indirect=True)
def test_the_openvino_tokenizers_fixes_are_made_once(gguf_file, exported, tmp_path):
    import shutil

    from ovchat.tools import ov_tokenizer_fixes

    for name in ("openvino_tokenizer", "openvino_detokenizer"):
        for suffix in (".xml", ".bin"):
            shutil.copy(exported / (name + suffix), tmp_path)
    assert ov_tokenizer_fixes.apply(tmp_path) == []
