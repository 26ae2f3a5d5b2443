"""A GGUF file -> a Hugging Face model folder that optimum-intel can export.

Weights go through transformers' own GGUF loader (gguf-py dequantizes them to float32); the
config it reads gets the few values it leaves out (CONFIG_FIXES). The tokenizer does not: it is
rebuilt from the GGUF's own vocabulary the way llama.cpp tokenizes (tools/gguf_tokenizer.py says
why and how).

Supported: the architectures in SUPPORTED_ARCHITECTURES, the vocabularies gguf_tokenizer
rebuilds (byte-level BPE with a known pre-tokenizer, SentencePiece), tensors of the types in
TENSOR_TYPES. Anything else is refused with one line (GgufError) naming it and what is
supported, before any slow work, rather than exported with weights or a tokenizer nobody checked.
"""

from dataclasses import replace
from pathlib import Path

from ..engine import EngineError
from .gguf_tokenizer import GgufVocab, PRE_TOKENIZERS, build_tokenizer, read_vocab, save_tokenizer  # noqa: F401
from . import gguf_tokenizer
from .family_templates import family_template

# llama.cpp's architecture names that transformers' GGUF loader reads and whose conversion is tested
# against llama.cpp; whether optimum-intel exports them with the installed transformers is asked
# separately (check_exportable: Gemma 2 and 3 not with transformers 5.5).
SUPPORTED_ARCHITECTURES = ("llama", "qwen2", "qwen3", "gemma2", "gemma3", "phi3")
# The tensor types gguf-py dequantizes and the tests write (tests/test_gguf_families.py).
TENSOR_TYPES = ("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")
# Values transformers' GGUF loader leaves at its config class's defaults (5.5): {architecture:
# {GGUF key after "ARCH.": config field}}. Its Qwen3 default head_dim is 128, its Gemma 2 soft-caps
# are Gemma 2's own; a file that says otherwise gets what it says.
CONFIG_FIXES = {
    "qwen3": {"attention.key_length": "head_dim"},
    "gemma2": {"attn_logit_softcapping": "attn_logit_softcapping", "final_logit_softcapping": "final_logit_softcapping"},
    "gemma3": {"attention.key_length": "head_dim"},
    "phi3": {"attention.sliding_window": "sliding_window"},
}
# The decoding a GGUF recommends (llama.cpp's general.sampling.* keys) -> generation_config.json,
# where ovchat reads a model's own decoding settings (engine/model.py, DECODING_KEYS).
SAMPLING_KEYS = {"temp": "temperature", "top_k": "top_k", "top_p": "top_p", "penalty_repeat": "repetition_penalty"}
_GEMMA_27B_LAYERS = {"gemma2": 46, "gemma3": 62}
# llama.cpp's architecture name -> transformers' model_type, where they differ.
HF_MODEL_TYPES = {"gemma3": "gemma3_text"}
_GGUF_MAGIC = b"GGUF"


class GgufError(EngineError):
    """The GGUF file is unreadable or of a kind this converter does not support."""


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
    why = gguf_tokenizer.unsupported(read_vocab(reader))
    if why:
        raise GgufError(
            f"{path.name}: GGUF {why} is not supported (supported: {gguf_tokenizer.supported_vocabularies()}); "
            "export the original Hugging Face folder instead"
        )
    odd = sorted({t.tensor_type.name for t in reader.tensors} - set(TENSOR_TYPES))
    if odd:
        raise GgufError(
            f"{path.name}: GGUF tensor type {', '.join(odd)} is not supported (supported: {', '.join(TENSOR_TYPES)}); "
            "use a file quantized to one of those (e.g. Q4_K_M, Q8_0) or export the original Hugging Face folder"
        )


def check_exportable(reader, path: Path) -> None:
    """Raise GgufError when optimum-intel refuses this file's architecture with the installed
    transformers, before the conversion spends minutes on it."""
    why = unexportable(architecture(reader))
    if why:
        raise GgufError(f"{path.name}: {why}")


def unexportable(arch: str) -> str | None:
    """Why optimum-intel will not export llama.cpp architecture `arch` here, or None."""
    model_type = HF_MODEL_TYPES.get(arch, arch)
    why = model_type_unexportable(model_type)
    return f"GGUF architecture '{arch}' converts, but {why}" if why else None


def model_type_unexportable(model_type: str) -> str | None:
    """Why optimum-intel will not export transformers' `model_type` here, or None. Its export configs
    carry the transformers versions they accept (optimum_cli.lift raises Gemma 2 and 3's)."""
    from importlib.metadata import version

    from optimum.exporters.tasks import TasksManager
    from packaging.version import Version

    from .optimum_cli import lift

    lift()  # the ceilings ovchat's export runs with
    try:
        config = TasksManager.get_exporter_config_constructor(
            exporter="openvino", model_type=model_type, task="text-generation-with-past", library_name="transformers")
    except (KeyError, ValueError):
        return f"optimum-intel {version('optimum-intel')} has no OpenVINO export for '{model_type}'"
    config = getattr(config, "func", config)
    low, high = getattr(config, "MIN_TRANSFORMERS_VERSION", None), getattr(config, "MAX_TRANSFORMERS_VERSION", None)
    installed = Version(version("transformers"))
    if (high and installed > Version(str(high))) or (low and installed < Version(str(low))):
        accepted = " and ".join(f"{op} {v}" for op, v in ((">=", low), ("<=", high)) if v)
        return (f"optimum-intel {version('optimum-intel')} exports '{model_type}' only with transformers {accepted} "
                f"(installed: {installed}); it cannot be exported with this install")
    return None


def stop_token_ids(vocab: GgufVocab) -> list:
    return vocab.stop_token_ids()


def config_overrides(reader, vocab: GgufVocab) -> dict:
    """Config fields the GGUF states and transformers' loader does not read (CONFIG_FIXES), and the
    padding id (the config class's default can lie outside a small vocabulary)."""
    arch = architecture(reader)
    fixes = {field: _value(reader, f"{arch}.{key}") for key, field in CONFIG_FIXES.get(arch, {}).items()}
    fixes = {field: value for field, value in fixes.items() if value is not None} | {"pad_token_id": vocab.pad_id}
    if arch in _GEMMA_27B_LAYERS:
        fixes["query_pre_attn_scalar"] = _gemma_query_scale(reader, arch)
    return fixes


def _gemma_query_scale(reader, arch: str) -> float:
    """What llama.cpp divides Gemma's queries by the square root of: the head size, but hidden size /
    heads for the 27B models (told apart by their layer count); transformers' default is 256."""
    if _value(reader, f"{arch}.block_count") == _GEMMA_27B_LAYERS[arch]:
        return _value(reader, f"{arch}.embedding_length") // _value(reader, f"{arch}.attention.head_count")
    return _value(reader, f"{arch}.attention.key_length")


def recommended_decoding(reader) -> dict:
    """generation_config fields for the decoding the file recommends, if it does (temperature 0: greedy)."""
    found = {field: _value(reader, f"general.sampling.{key}") for key, field in SAMPLING_KEYS.items()}
    found = {field: float(value) if field != "top_k" else int(value) for field, value in found.items() if value is not None}
    if "temperature" in found:
        found["do_sample"] = found["temperature"] > 0
    return found


def convert(gguf_path: Path, out_dir: Path) -> dict:
    """Write a float32 Hugging Face model folder for `gguf_path` into `out_dir`.

    Returns a short summary for the manifest: architecture, tensor types, vocabulary size, the
    recommended decoding, and where the chat template came from ("file", "family:NAME" for a file
    without one, family_templates.py, or None: no template)."""
    import torch
    from transformers import AutoModelForCausalLM

    reader = read_gguf(gguf_path)
    check_supported(reader, gguf_path)
    vocab = read_vocab(reader)
    template_from = "file"
    if not vocab.chat_template:  # a base model's file: its family's turn format, if the vocabulary has it
        found = family_template(architecture(reader), vocab.tokens)
        template_from = f"family:{found[0]}" if found else None
        vocab = replace(vocab, chat_template=found[1] if found else None)
    tensor_types = sorted({t.tensor_type.name for t in reader.tensors})
    overrides = config_overrides(reader, vocab)
    sampling = recommended_decoding(reader)
    del reader
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32, **overrides
    )
    stops = stop_token_ids(vocab)
    model.generation_config.eos_token_id = stops[0] if len(stops) == 1 else stops
    model.generation_config.bos_token_id = vocab.bos_id
    model.generation_config.pad_token_id = vocab.pad_id
    for name, value in sampling.items():
        setattr(model.generation_config, name, value)
    model.save_pretrained(str(out_dir))
    save_tokenizer(vocab, out_dir)
    if vocab.chat_template:  # transformers 5 keeps it in its own file; optimum reads either
        (out_dir / "chat_template.jinja").write_text(vocab.chat_template)
    return {"architecture": model.config.model_type, "gguf_tensor_types": tensor_types, "vocab_size": len(vocab.tokens),
            "recommended_decoding": sampling, "chat_template": template_from}

