"""Find and describe a model: an exported folder (ovchat's or any optimum-intel export with
openvino-tokenizers files) or a .gguf file, which openvino_genai reads natively."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelError
from .gguf_meta import read_metadata, stop_token_ids
from .paths import default_model_dir

REQUIRED_FILES = ("openvino_model.xml", "openvino_model.bin", "openvino_tokenizer.xml", "openvino_detokenizer.xml")


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    format: str                       # "openvino" (an exported folder) or "gguf"
    architecture: str | None
    context_length: int | None        # tokens; None when the model does not say
    eos_token_ids: tuple[int, ...]    # from generation_config.json (Phi-3 also stops on <|end|>)
    size_bytes: int                   # weights on disk
    manifest: dict | None             # ovchat.json written by `ovchat export`, if any


def resolve(model: str | Path | None) -> ModelInfo:
    """Check `model` is usable and describe it; None means the embedded default model."""
    if model is None:
        path = default_model_dir()
        if not (path / "openvino_model.xml").exists():
            raise ModelError(
                f"The default model is not prepared yet (looked in {path}). "
                "Run `ovchat export default` once (a few minutes), or pass a model with -m."
            )
    else:
        path = Path(model).expanduser()
    if not path.exists():
        raise ModelError(f"No model at {path}. Pass an exported folder (see `ovchat export`) or a .gguf file.")
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelError(f"{path} is a file but not a .gguf; pass an exported folder or a .gguf file.")
        return _describe_gguf(path)
    return _describe_folder(path)


def _describe_folder(path: Path) -> ModelInfo:
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise ModelError(
            f"{path} is missing {', '.join(missing)}. Export the model with "
            "`ovchat export SRC OUT` (it writes the IR and the openvino-tokenizers files)."
        )
    config = _read_json(path / "config.json")
    generation = _read_json(path / "generation_config.json")
    eos = generation.get("eos_token_id", config.get("eos_token_id"))
    return ModelInfo(
        path=path,
        format="openvino",
        architecture=config.get("model_type"),
        context_length=config.get("max_position_embeddings"),
        eos_token_ids=tuple(eos if isinstance(eos, list) else [eos] if eos is not None else []),
        size_bytes=(path / "openvino_model.bin").stat().st_size,
        manifest=_read_json(path / "ovchat.json") or None,
    )


def _describe_gguf(path: Path) -> ModelInfo:
    meta = read_metadata(path)
    arch = meta.get("general.architecture")
    return ModelInfo(
        path=path,
        format="gguf",
        architecture=arch,
        context_length=meta.get(f"{arch}.context_length"),
        eos_token_ids=tuple(stop_token_ids(meta.get("tokenizer.ggml.eos_token_id"), meta.get("tokenizer.ggml.eot_token_id"))),
        size_bytes=path.stat().st_size,
        manifest=None,
    )


def _read_json(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelError(f"{path} is not valid JSON ({error}); re-export the model.") from None
