"""The models in a folder (by default ovchat's cache of exported models, $OVCHAT_CACHE/models):
what `ovchat list/show/rm` print and what `ovchat serve --models-dir` serves.

Each subfolder holding an exported model (openvino_model.xml) and each .gguf file is one model,
named after the folder (or the file without .gguf). What ovchat knows of it comes from its
manifest (ovchat.json, written by `ovchat export`): the source, the export recipe, the fidelity
check. Reading a catalog never loads OpenVINO.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelError
from .model import MANIFEST, _read_json
from .paths import models_dir  # noqa: F401  (the catalog's default folder)


@dataclass(frozen=True)
class CatalogEntry:
    """One model on disk."""
    name: str
    path: Path
    format: str            # "openvino" or "gguf"
    size_bytes: int        # every file of the folder (or the .gguf)
    manifest: dict | None  # ovchat.json, if `ovchat export` wrote one

    @property
    def source(self) -> str:
        source = (self.manifest or {}).get("source") or {}
        return source.get("kind") == "default" and "default" or str(source.get("path") or source.get("id") or "-")

    @property
    def recipe(self) -> str:
        recipe = (self.manifest or {}).get("recipe") or {}
        if not recipe:
            return "-"
        words = [str(recipe.get("weight_format", "?"))]
        if recipe.get("group_size"):
            words.append(f"g{recipe['group_size']}")
        if recipe.get("ratio") not in (None, 1, 1.0):
            words.append(f"r{recipe['ratio']}")
        return " ".join(words)

    @property
    def fidelity(self) -> str:
        fidelity = (self.manifest or {}).get("fidelity") or {}
        if not fidelity:
            return "-"
        verdict = "passed" if fidelity.get("passed") else "FAILED"
        agreement = fidelity.get("top1_agreement")
        return f"{verdict} (top-1 {agreement:.0%})" if isinstance(agreement, (int, float)) else verdict


def size_on_disk(path: Path) -> int:
    """Bytes of a file, or of every file under a folder."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def describe(path: Path) -> CatalogEntry | None:
    """The catalog entry of one exported folder or .gguf file; None if it is neither."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".gguf":
        return CatalogEntry(path.stem, path, "gguf", path.stat().st_size, None)
    if path.is_dir() and (path / "openvino_model.xml").is_file():
        try:
            manifest = _read_json(path / MANIFEST) or None
        except ModelError:
            manifest = None
        return CatalogEntry(path.name, path, "openvino", size_on_disk(path), manifest)
    return None


def list_models(folder: Path | None = None) -> list[CatalogEntry]:
    """Every model in `folder` (default: models_dir()), by name; [] if the folder does not exist."""
    folder = Path(folder).expanduser() if folder is not None else models_dir()
    if not folder.is_dir():
        return []
    entries = (describe(child) for child in sorted(folder.iterdir()) if not child.name.startswith("."))
    return [entry for entry in entries if entry is not None]


def find_model(name: str, folder: Path | None = None) -> CatalogEntry:
    """The model called `name` in `folder`; raises ModelError naming the ones there."""
    entries = list_models(folder)
    for entry in entries:
        if entry.name == name:
            return entry
    where = Path(folder).expanduser() if folder is not None else models_dir()
    there = ", ".join(entry.name for entry in entries) or "none"
    raise ModelError(f"No model {name!r} in {where} (there: {there}). See `ovchat list`, or export one with "
                     "`ovchat export`.")


def remove_model(entry: CatalogEntry) -> None:
    """Delete a model's folder (or .gguf file) from disk."""
    if entry.path.is_dir():
        shutil.rmtree(entry.path)
    else:
        entry.path.unlink()


def chat_template(entry: CatalogEntry) -> str | None:
    """The model's chat template as its files state it (no OpenVINO): chat_template.jinja,
    tokenizer_config.json, the tokenizer IR's rt_info, or a GGUF's metadata."""
    if entry.format == "gguf":
        from .gguf_meta import read_metadata
        return read_metadata(entry.path).get("tokenizer.chat_template")
    jinja = entry.path / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    try:
        template = _read_json(entry.path / "tokenizer_config.json").get("chat_template")
    except ModelError:
        template = None
    if isinstance(template, str):
        return template
    import xml.etree.ElementTree as ElementTree
    try:
        for _, element in ElementTree.iterparse(entry.path / "openvino_tokenizer.xml"):
            if element.tag == "chat_template" and element.get("value"):
                return element.get("value")
    except (OSError, ElementTree.ParseError):
        return None
    return None
