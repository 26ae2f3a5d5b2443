"""A GGUF file's vocabulary -> a Hugging Face fast tokenizer that encodes as llama.cpp does.

transformers 5.x converts GGUF vocabularies wrongly (SmolLM2's "What is the capital of France?"
comes out as garbage ids once saved and reloaded, and the exported model then emits only
newlines), so ovchat never uses its GGUF tokenizer: it rebuilds one with the `tokenizers`
library from the file's own tokens, merges or scores, token types, special-token ids and chat
template, following llama.cpp's src/llama-vocab.cpp rule for rule, and saves it as a
PreTrainedTokenizerFast, which optimum and openvino_tokenizers convert as usual.

Two kinds of vocabulary (`tokenizer.ggml.model`):
  "gpt2"   byte-level BPE: llama.cpp splits the text with its pre-tokenizer's regexes
           (PRE_TOKENIZERS, by `tokenizer.ggml.pre`), maps bytes to GPT-2's printable
           characters and applies the merges (a whole word found in the vocabulary is taken as
           it is where llama.cpp sets `ignore_merges`).
  "llama"  SentencePiece (Llama 2, Mistral, Phi-3, Gemma): spaces become "▁", a "▁" is put in
           front of the text and after every special token (`tokenizer.ggml.add_space_prefix`,
           true unless the file says otherwise), then adjacent pieces merge, highest-scoring
           result first, and what is left unknown falls back to <0xXX> byte tokens. That is a
           BPE whose merges are ordered by the merged piece's score.
Either way llama.cpp first cuts out the control, user-defined and unknown tokens written in the
text (with `special=True`), as tokenizers does with added tokens; and it treats a few texts as
control tokens whatever their type in the file (`<|im_end|>`, `<end_of_turn>`...): so do we.
Which strings are verified id for id against llama.cpp: tests/test_gguf_tokenizer_parity.py.
"""

from dataclasses import dataclass
from pathlib import Path

from ..engine import gguf_meta

# tokenizer.ggml.pre -> (llama.cpp's regexes, applied one after the other, each splitting the
# pieces the previous one left; whether a whole word in the vocabulary skips the merges).
# From llama.cpp's llm_tokenizer_bpe (src/llama-vocab.cpp, the bench extra's version).
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_LLAMA3 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
           r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
          r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# llama.cpp's smollm/starcoder split, "\p{N}" then _GPT2 within each piece, written as one regex
# giving the same pieces: no _GPT2 alternative crosses a number character but "\s+(?!\S)", whose
# lookahead here stops at one too, and " ?\p{N}+" never matches within a piece. Two splits would
# be joined by openvino_tokenizers into one alternation ("\p{N}|" + _GPT2), keeping " ½" whole.
_DIGITS_THEN_GPT2 = r"\p{N}|'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?[^\s\p{L}\p{N}]+|\s+(?![^\s\p{N}])"
PRE_TOKENIZERS = {
    "smollm": ((_DIGITS_THEN_GPT2,), False),
    "starcoder": ((_DIGITS_THEN_GPT2,), False),
    "gpt-2": ((_GPT2,), False),
    "llama-bpe": ((_LLAMA3,), True),
    "llama3": ((_LLAMA3,), True),
    "llama-v3": ((_LLAMA3,), True),
    "qwen2": ((_QWEN2,), False),
    "deepseek-r1-qwen": ((_QWEN2,), False),
}
BPE, SPM = "gpt2", "llama"   # tokenizer.ggml.model values
VOCABULARIES = {BPE: "byte-level BPE", SPM: "SentencePiece"}
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6  # gguf.TokenType
# Texts llama.cpp makes control tokens whatever the file says (its EOT/EOG detection), and the
# first of them found is its end-of-turn token when the file names none.
_EOT_TEXTS = ("<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>",
              "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>")
_EOG_TEXTS = _EOT_TEXTS + ("<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "</s>", "<|eom_id|>", "[EOS]",
                           "<eos>", "<turn|>", "<|tool_response>", "[e~[")


@dataclass(frozen=True)
class GgufVocab:
    """The tokenizer part of a GGUF file, as stored in it."""

    model: str
    tokens: list
    merges: list
    scores: list
    token_types: list
    pre: str
    bos_id: int | None
    eos_id: int | None
    unk_id: int | None
    pad_id: int | None
    eot_id: int | None
    add_bos: bool
    add_eos: bool
    add_space_prefix: bool
    chat_template: str | None
    name: str = ""

    @property
    def kind(self) -> str:
        return VOCABULARIES.get(self.model, self.model)

    def special_types(self) -> list:
        """Each token's type as llama.cpp uses it (known end-of-turn texts become control tokens)."""
        types = list(self.token_types) or [_NORMAL] * len(self.tokens)
        for i, token in enumerate(self.tokens):
            if token in _EOG_TEXTS:
                types[i] = _CONTROL
        return types

    def end_of_turn_id(self) -> int | None:
        """The file's EOT token, else the first known end-of-turn text llama.cpp would pick."""
        if self.eot_id is not None:
            return self.eot_id
        ids = {token: i for i, token in enumerate(self.tokens) if token in _EOT_TEXTS}
        return next((ids[t] for t in _EOT_TEXTS if t in ids), None)

    def stop_token_ids(self) -> list:
        # The rule the engine applies to a GGUF it runs directly.
        return gguf_meta.stop_token_ids(self.eos_id, self.end_of_turn_id())


def _value(reader, key, default=None):
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def read_vocab(reader) -> GgufVocab:
    def token_id(name):
        value = _value(reader, f"tokenizer.ggml.{name}_token_id")
        return None if value is None else int(value)

    model = str(_value(reader, "tokenizer.ggml.model", ""))
    spm = model == SPM  # llama.cpp's defaults differ by kind: SPM adds BOS and a space prefix
    return GgufVocab(
        model=model,
        tokens=list(_value(reader, "tokenizer.ggml.tokens", [])),
        merges=list(_value(reader, "tokenizer.ggml.merges", [])),
        scores=list(_value(reader, "tokenizer.ggml.scores", [])),
        token_types=list(_value(reader, "tokenizer.ggml.token_type", [])),
        pre=str(_value(reader, "tokenizer.ggml.pre", "default")),
        bos_id=token_id("bos") if token_id("bos") is not None or not spm else 1,
        eos_id=token_id("eos") if token_id("eos") is not None or not spm else 2,
        unk_id=token_id("unknown") if token_id("unknown") is not None or not spm else 0,
        pad_id=token_id("padding"),
        eot_id=token_id("eot"),
        add_bos=bool(_value(reader, "tokenizer.ggml.add_bos_token", spm or model == BPE and _pre_adds_bos(reader))),
        add_eos=bool(_value(reader, "tokenizer.ggml.add_eos_token", False)),
        add_space_prefix=bool(_value(reader, "tokenizer.ggml.add_space_prefix", spm)),
        chat_template=_value(reader, "tokenizer.chat_template"),
        name=str(_value(reader, "general.name", "")),
    )


def _pre_adds_bos(reader) -> bool:
    return str(_value(reader, "tokenizer.ggml.pre", "")) in ("llama-bpe", "llama3", "llama-v3")


def unsupported(vocab: GgufVocab) -> str | None:
    """Why this vocabulary cannot be rebuilt exactly, or None."""
    if vocab.model not in VOCABULARIES:
        return f"tokenizer '{vocab.model}'"
    if vocab.model == BPE and vocab.pre not in PRE_TOKENIZERS:
        return f"tokenizer 'gpt2' (byte-level BPE) with pre-tokenizer '{vocab.pre}'"
    if vocab.model == SPM and not vocab.scores:
        return "tokenizer 'llama' (SentencePiece) without token scores"
    return None


def supported_vocabularies() -> str:
    return f"byte-level BPE 'gpt2' with pre-tokenizer {', '.join(PRE_TOKENIZERS)}; SentencePiece 'llama'"


def build_tokenizer(vocab: GgufVocab):
    """A `tokenizers.Tokenizer` equivalent to llama.cpp's for this vocabulary."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer(_spm_model(vocab) if vocab.model == SPM else _bpe_model(vocab))
    if vocab.model == SPM:
        _set_spm_pipeline(tokenizer, vocab)
    else:
        _set_bpe_pipeline(tokenizer, vocab)
    _set_post_processor(tokenizer, vocab)
    tokenizer.add_tokens(_added_tokens(vocab))
    return tokenizer


def _bpe_model(vocab: GgufVocab):
    from tokenizers import models

    return models.BPE(vocab={token: i for i, token in enumerate(vocab.tokens)},
                      merges=[tuple(merge.split(" ", 1)) for merge in vocab.merges],
                      ignore_merges=PRE_TOKENIZERS[vocab.pre][1])


def _set_bpe_pipeline(tokenizer, vocab: GgufVocab) -> None:
    from tokenizers import Regex, decoders, pre_tokenizers

    regexes, _ = PRE_TOKENIZERS[vocab.pre]
    splits = [pre_tokenizers.Split(Regex(regex), behavior="isolated") for regex in regexes]
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [*splits, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tokenizer.decoder = decoders.ByteLevel()


def spm_merges(vocab: GgufVocab) -> list:
    """BPE merges for a SentencePiece vocabulary: every split of a piece into two pieces of the
    vocabulary, best merged score first (llama.cpp merges the highest-scoring pair; ties go to
    the leftmost pair, which BPE's rank-then-position order gives within one merged piece).

    None makes a token that is cut out of the text before tokenizing (_added_tokens) and holds no
    "▁": the normalized text holds such a token only where the raw text did, where it was cut
    out, so no merge could make it anyway. openvino_tokenizers' BPE needs it so: it starts from
    the longest tokens that no merge makes, so Gemma's user-defined "    " ("  " + "  ") came out
    as "   " + "<0x20>"."""
    ids = {token: i for i, token in enumerate(vocab.tokens)}
    cut_out = {token for token, _ in _cut_out(vocab) if "▁" not in token}
    merges = []
    for token, merged_id in ids.items():
        if token in cut_out:
            continue
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            if left in ids and right in ids:
                merges.append((-vocab.scores[merged_id], merged_id, ids[left], left, right))
    merges.sort()
    return [(left, right) for *_, left, right in merges]


def _cut_out(vocab: GgufVocab) -> list:
    """(text, type) of the tokens llama.cpp cuts out of the text before tokenizing it (special=True)."""
    return [(vocab.tokens[i], kind) for i, kind in enumerate(vocab.special_types())
            if kind in (_CONTROL, _USER_DEFINED, _UNKNOWN)]


def _spm_model(vocab: GgufVocab):
    from tokenizers import models

    unk = vocab.tokens[vocab.unk_id] if vocab.unk_id is not None else None
    return models.BPE(vocab={token: i for i, token in enumerate(vocab.tokens)}, merges=spm_merges(vocab),
                      unk_token=unk, fuse_unk=True, byte_fallback=True)


def _set_spm_pipeline(tokenizer, vocab: GgufVocab) -> None:
    from tokenizers import decoders, normalizers

    steps = [normalizers.Prepend("▁")] if vocab.add_space_prefix else []
    tokenizer.normalizer = normalizers.Sequence([*steps, normalizers.Replace(" ", "▁")])
    decode = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    if vocab.add_space_prefix:  # llama.cpp drops the space it put in front of the text
        decode.append(decoders.Strip(" ", 1, 0))
    tokenizer.decoder = decoders.Sequence(decode)


def _set_post_processor(tokenizer, vocab: GgufVocab) -> None:
    from tokenizers import processors

    bos = vocab.tokens[vocab.bos_id] if vocab.add_bos and vocab.bos_id is not None else None
    eos = vocab.tokens[vocab.eos_id] if vocab.add_eos and vocab.eos_id is not None else None
    if bos is None and eos is None:
        if vocab.model == BPE:
            tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
        return
    single = " ".join(t for t in (bos, "$A", eos) if t)
    pair = " ".join(t for t in (bos, "$A", eos, bos, "$B", eos) if t)
    specials = [(t, vocab.tokens.index(t)) for t in dict.fromkeys((bos, eos)) if t]
    tokenizer.post_processor = processors.TemplateProcessing(single=single, pair=pair, special_tokens=specials)


def _added_tokens(vocab: GgufVocab) -> list:
    """The tokens llama.cpp cuts out of the text before tokenizing it (with special=True)."""
    from tokenizers import AddedToken

    # llama.cpp's Phi-3 rule (by general.name): special tokens eat the whitespace after them.
    phi3 = any(name in vocab.name.lower() for name in ("phi-3", "phi3"))
    added = []
    for token, kind in _cut_out(vocab):
        rstrip = phi3 and token not in ("<unk>", "<s>", "<|endoftext|>")
        added.append(AddedToken(token, special=kind != _USER_DEFINED, normalized=False, rstrip=rstrip))
    return added


def save_tokenizer(vocab: GgufVocab, out_dir: Path) -> None:
    """Write tokenizer.json, tokenizer_config.json (with the chat template) and friends."""
    from transformers import PreTrainedTokenizerFast

    def name(token_id):
        return None if token_id is None else vocab.tokens[token_id]

    fast = PreTrainedTokenizerFast(
        tokenizer_object=build_tokenizer(vocab),
        bos_token=name(vocab.bos_id),
        eos_token=name(vocab.eos_id),
        unk_token=name(vocab.unk_id),
        pad_token=name(vocab.pad_id),
        clean_up_tokenization_spaces=False,
        model_max_length=1 << 30,
    )
    if vocab.chat_template:
        fast.chat_template = vocab.chat_template
    fast.save_pretrained(str(out_dir))
