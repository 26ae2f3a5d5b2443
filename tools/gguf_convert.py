"""A GGUF file -> a Hugging Face model folder that optimum-intel can export.

Weights go through transformers' own GGUF loader (it dequantizes to float32). The tokenizer
does not: transformers 5.x converts byte-level BPE GGUF vocabularies wrongly (SmolLM2's
"What is the capital of France?" comes out as garbage ids, and the exported model then
emits only newlines). So we rebuild it with the `tokenizers` library from the GGUF's own
tokens, merges, token types, special-token ids and chat template, and save it as a
PreTrainedTokenizerFast, which optimum and openvino_tokenizers convert as usual.

Supported: architectures in SUPPORTED_ARCHITECTURES with a byte-level BPE vocabulary
(`tokenizer.ggml.model == "gpt2"`) and a pre-tokenizer in PRE_TOKENIZERS. Anything else is
refused with one line (GgufError) rather than exported with a tokenizer we cannot vouch for.
"""

from dataclasses import dataclass
from pathlib import Path

from ..engine import EngineError, gguf_meta

SUPPORTED_ARCHITECTURES = ("llama",)
# llama.cpp's pre-tokenizer names -> whether digits are split one by one before the GPT-2
# byte-level regex: llama.cpp splits SMOLLM and STARCODER with "\p{N}" then the GPT-2 regex, and
# GPT2 with the GPT-2 regex alone. Only "smollm" is verified token for token (tests); others,
# e.g. llama-bpe (Llama 3) with its own regex, are refused rather than guessed.
PRE_TOKENIZERS = {"smollm": True, "starcoder": True, "gpt2": False}
_CONTROL, _USER_DEFINED = 3, 4  # gguf.TokenType values
_GGUF_MAGIC = b"GGUF"


class GgufError(EngineError):
    """The GGUF file is unreadable or of a kind this converter does not support."""


@dataclass(frozen=True)
class GgufVocab:
    """The tokenizer part of a GGUF file, as stored in it."""

    tokens: list
    merges: list
    token_types: list
    pre: str
    bos_id: int | None
    eos_id: int | None
    unk_id: int | None
    pad_id: int | None
    eot_id: int | None
    add_bos: bool
    chat_template: str | None


def is_gguf(path: Path) -> bool:
    """True when `path` is a file that starts with the GGUF magic bytes."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == _GGUF_MAGIC
    except OSError:
        return False


def read_gguf(path: Path):
    """Open `path` with the gguf library; a GgufError if it is not a readable GGUF."""
    from gguf import GGUFReader

    try:
        return GGUFReader(str(path))
    except (OSError, ValueError, KeyError, IndexError) as error:
        raise GgufError(f"{path} is not a readable GGUF file (truncated or corrupt); check it or download it again") from error


def _value(reader, key, default=None):
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def architecture(reader) -> str:
    return str(_value(reader, "general.architecture", "unknown"))


def check_supported(reader, path: Path) -> None:
    """Raise GgufError naming what is unsupported, before any slow work starts."""
    arch = architecture(reader)
    if arch not in SUPPORTED_ARCHITECTURES:
        raise GgufError(
            f"{path.name}: GGUF architecture '{arch}' is not supported (supported: {', '.join(SUPPORTED_ARCHITECTURES)}); "
            "export the original Hugging Face folder instead"
        )
    model = _value(reader, "tokenizer.ggml.model")
    pre = _value(reader, "tokenizer.ggml.pre", "default")
    if model != "gpt2" or pre not in PRE_TOKENIZERS:
        raise GgufError(
            f"{path.name}: GGUF tokenizer '{model}' with pre-tokenizer '{pre}' is not supported "
            f"(supported: byte-level BPE 'gpt2' with {', '.join(PRE_TOKENIZERS)}); export the original Hugging Face folder instead"
        )


def read_vocab(reader) -> GgufVocab:
    def token_id(name):
        value = _value(reader, f"tokenizer.ggml.{name}_token_id")
        return None if value is None else int(value)

    return GgufVocab(
        tokens=list(_value(reader, "tokenizer.ggml.tokens")),
        merges=list(_value(reader, "tokenizer.ggml.merges", [])),
        token_types=list(_value(reader, "tokenizer.ggml.token_type", [])),
        pre=str(_value(reader, "tokenizer.ggml.pre", "default")),
        bos_id=token_id("bos"),
        eos_id=token_id("eos"),
        unk_id=token_id("unknown"),
        pad_id=token_id("padding"),
        eot_id=token_id("eot"),
        add_bos=bool(_value(reader, "tokenizer.ggml.add_bos_token", False)),
        chat_template=_value(reader, "tokenizer.chat_template"),
    )


def build_tokenizer(vocab: GgufVocab):
    """A `tokenizers.Tokenizer` equivalent to llama.cpp's for this vocabulary."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    bpe = models.BPE(
        vocab={token: i for i, token in enumerate(vocab.tokens)},
        merges=[tuple(merge.split(" ", 1)) for merge in vocab.merges],
        ignore_merges=False,
    )
    tokenizer = Tokenizer(bpe)
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if PRE_TOKENIZERS[vocab.pre]:
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    else:
        tokenizer.pre_tokenizer = byte_level
    tokenizer.decoder = decoders.ByteLevel()
    if vocab.add_bos and vocab.bos_id is not None:
        bos = vocab.tokens[vocab.bos_id]
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, vocab.bos_id)]
        )
    else:
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    added = [
        AddedToken(vocab.tokens[i], special=kind == _CONTROL, normalized=False)
        for i, kind in enumerate(vocab.token_types)
        if kind in (_CONTROL, _USER_DEFINED)
    ]
    tokenizer.add_tokens(added)
    return tokenizer


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


def stop_token_ids(vocab: GgufVocab) -> list:
    return gguf_meta.stop_token_ids(vocab.eos_id, vocab.eot_id)  # the rule the engine applies to a GGUF it runs


def convert(gguf_path: Path, out_dir: Path) -> dict:
    """Write a float32 Hugging Face model folder for `gguf_path` into `out_dir`.

    Returns a short summary (architecture, tensor types, vocabulary size) for the manifest."""
    import torch
    from transformers import AutoModelForCausalLM

    reader = read_gguf(gguf_path)
    check_supported(reader, gguf_path)
    vocab = read_vocab(reader)
    tensor_types = sorted({t.tensor_type.name for t in reader.tensors})
    del reader
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
    )
    stops = stop_token_ids(vocab)
    model.generation_config.eos_token_id = stops[0] if len(stops) == 1 else stops
    model.generation_config.bos_token_id = vocab.bos_id
    model.generation_config.pad_token_id = vocab.pad_id
    model.save_pretrained(str(out_dir))
    save_tokenizer(vocab, out_dir)
    if vocab.chat_template:  # transformers 5 keeps it in its own file; optimum reads either
        (out_dir / "chat_template.jinja").write_text(vocab.chat_template)
    return {"architecture": model.config.model_type, "gguf_tensor_types": tensor_types, "vocab_size": len(vocab.tokens)}

