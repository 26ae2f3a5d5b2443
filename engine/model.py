"""Find, describe and verify a model: an exported folder (ovchat's or any optimum-intel export
with openvino-tokenizers files) or a .gguf file, which openvino_genai reads natively.

`ModelInfo.generation_defaults` are the decoding settings a newcomer's answers use (the CLI's
demo, generate and chat): the model's own from generation_config.json, else ovchat's measured
default. `verify` checks an exported folder's files against the sizes and sha256 that
`ovchat export` recorded in ovchat.json; `damaged_files_message` turns what it finds into the
error a failed load shows, naming the file and the command that rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path

from .decoding import DEFAULT_DECODING
from .errors import ModelError
from .gguf_meta import direct_load_problem, read_header, read_metadata, stop_token_ids
from .paths import default_model_dir, models_dir

REQUIRED_FILES = ("openvino_model.xml", "openvino_model.bin", "openvino_tokenizer.xml", "openvino_detokenizer.xml")
MANIFEST = "ovchat.json"
# The decoding settings of generation_config.json that GenerationOptions takes.
DECODING_KEYS = ("do_sample", "temperature", "top_p", "top_k", "repetition_penalty")


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    format: str                       # "openvino" (an exported folder) or "gguf"
    architecture: str | None
    context_length: int | None        # tokens; None when the model does not say
    eos_token_ids: tuple[int, ...]    # from generation_config.json (Phi-3 also stops on <|end|>)
    size_bytes: int                   # weights on disk
    manifest: dict | None             # ovchat.json written by `ovchat export`, if any
    decoding: dict = field(default_factory=dict)  # the DECODING_KEYS generation_config.json states

    @property
    def generation_defaults(self) -> dict:
        """GenerationOptions fields for answers that read well: the model's own decoding settings
        (generation_config.json) if it states any, else DEFAULT_DECODING. `GenerationOptions()`
        itself stays plain greedy; `decoding.recommended_options(info.generation_defaults, ...)`
        fills in what a request leaves out (no penalties inside structured output or tool calls)."""
        return dict(self.decoding or DEFAULT_DECODING)


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
        path = _by_name(Path(model).expanduser())
    if not path.exists():
        raise ModelError(f"No model at {path}. Pass an exported folder (see `ovchat export`), a .gguf file, or the "
                         f"name of a model in {models_dir()} (`ovchat list`).")
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelError(f"{path} is a file but not a .gguf; pass an exported folder or a .gguf file.")
        return _describe_gguf(path)
    return _describe_folder(path)


def _by_name(path: Path) -> Path:
    """A bare name that is not a path here names a model in ovchat's cache (`ovchat export gemma3-270m`)."""
    if path.exists() or len(path.parts) != 1:
        return path
    cached = models_dir() / path.name
    return cached if cached.exists() else path


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
        manifest=_read_json(path / MANIFEST) or None,
        decoding={key: generation[key] for key in DECODING_KEYS if generation.get(key) is not None},
    )


def loadable(model: str | Path | None) -> ModelInfo:
    """resolve(model), and for a GGUF a ModelError unless openvino_genai's reader runs it as llama.cpp
    does (gguf_meta.direct_load_problem): before the reader fails deep inside with a message that says
    nothing, or runs with a tokenizer that is not the file's."""
    info = resolve(model)
    if info.format == "gguf":
        problem = direct_load_problem(*read_header(info.path))
        if problem:
            raise ModelError(f"{info.path.name} cannot run directly: openvino_genai's GGUF reader does not take its "
                             f"{problem}. Export it first, which does: `ovchat export {info.path} OUT`, then load OUT.")
    return info


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


def verify(info: ModelInfo, hashes: bool = True) -> list[str]:
    """What is wrong with an exported folder's files, one sentence per file; [] when nothing is.

    Every file ovchat.json records must be there with its size and (when `hashes`) its sha256.
    Without a record (an older export, or another tool's) every IR's .bin must at least hold all
    the weights its .xml points into, which catches a truncated file."""
    if info.format != "openvino":
        return []
    recorded = (info.manifest or {}).get("files") or {}
    problems = [_check_recorded(info.path / name, record, hashes) for name, record in recorded.items()]
    problems += [_check_weights_extent(xml) for xml in sorted(info.path.glob("*.xml")) if xml.name not in recorded]
    return [problem for problem in problems if problem]


def damaged_files_message(info: ModelInfo) -> str | None:
    """The error a failed load shows when files are missing, truncated or altered; None if none are."""
    problems = verify(info)
    if not problems:
        return None
    return f"could not load {info.path}, its files are damaged: {'; '.join(problems)}. Re-export it: {reexport_command(info)}."


def reexport_command(info: ModelInfo) -> str:
    """The command that rebuilds this folder, as far as its manifest tells."""
    source = (info.manifest or {}).get("source") or {}
    if source.get("kind") == "default":
        return "`ovchat export default --force`"
    return f"`ovchat export {source.get('path', 'SRC')} {info.path} --force`"


def _check_recorded(file: Path, record: dict, hashes: bool) -> str | None:
    if not file.is_file():
        return f"{file.name} is missing"
    size, expected = file.stat().st_size, record.get("size_bytes")
    if expected is not None and size != expected:
        state = "truncated" if size < expected else "larger than exported"
        return f"{file.name} is {state} ({size} bytes, exported as {expected})"
    if hashes and record.get("sha256") and _sha256(file) != record["sha256"]:
        return f"{file.name} was altered (its sha256 differs from the one recorded at export)"
    return None


def _check_weights_extent(xml: Path) -> str | None:
    weights = xml.with_suffix(".bin")
    try:
        needed = max((int(data.get("offset")) + int(data.get("size"))
                      for _, data in ElementTree.iterparse(xml) if data.tag == "data" and data.get("offset")),
                     default=0)
    except (ElementTree.ParseError, ValueError):
        return f"{xml.name} is not a readable OpenVINO IR"
    if needed and not weights.is_file():
        return f"{weights.name} is missing"
    if needed and weights.stat().st_size < needed:
        return f"{weights.name} is truncated ({weights.stat().st_size} bytes, {xml.name} needs {needed})"
    return None


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
