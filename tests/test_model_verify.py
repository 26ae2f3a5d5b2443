"""Verifiable model folders: ovchat.json's file records, `ovchat info --verify`, and a failed load
that names the damaged file and the command that rebuilds it."""

import json
import shutil
import subprocess
import sys

import pytest

from ovchat.engine import Engine, ModelError
from ovchat.engine.model import damaged_files_message, resolve, verify
from ovchat.tools.export import MANIFEST, file_records

IR_XML = """<?xml version="1.0"?>
<net name="fake" version="11"><layers>
<layer id="0" name="w" type="Const" version="opset1"><data element_type="f32" shape="4" offset="0" size="16"/></layer>
<layer id="1" name="b" type="Const" version="opset1"><data element_type="f32" shape="8" offset="16" size="32"/></layer>
</layers></net>"""


def fake_export(folder, source_kind="default", record=True):
    """A folder that resolve() accepts: IR whose .bin holds the 48 bytes its .xml points into."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("openvino_model", "openvino_tokenizer", "openvino_detokenizer"):
        (folder / f"{name}.xml").write_text(IR_XML)
        (folder / f"{name}.bin").write_bytes(bytes(range(48)))
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "max_position_embeddings": 2048}))
    (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": 2}))
    manifest = {"source": {"kind": source_kind, "path": "/src/model.gguf"}}
    if record:
        manifest["files"] = file_records(folder)
    (folder / MANIFEST).write_text(json.dumps(manifest))
    return folder


def test_an_intact_export_verifies(tmp_path):
    folder = fake_export(tmp_path / "m")
    assert verify(resolve(folder)) == [] and damaged_files_message(resolve(folder)) is None


def test_the_manifest_records_every_file_but_itself(tmp_path):
    records = json.loads((fake_export(tmp_path / "m") / MANIFEST).read_text())["files"]
    assert MANIFEST not in records and records["openvino_model.bin"]["size_bytes"] == 48
    assert len(records["openvino_model.bin"]["sha256"]) == 64


@pytest.mark.parametrize("damage, words", [
    (lambda f: f.write_bytes(f.read_bytes()[:20]), "openvino_model.bin is truncated (20 bytes, exported as 48)"),
    (lambda f: f.write_bytes(bytes(48)), "openvino_model.bin was altered"),
    (lambda f: f.unlink(), "openvino_model.bin is missing"),
])
def test_a_damaged_file_is_named_with_what_is_wrong(tmp_path, damage, words):
    folder = fake_export(tmp_path / "m")
    info = resolve(folder)  # before the damage: a missing openvino_model.bin is refused by resolve itself
    damage(folder / "openvino_model.bin")
    (problem,) = verify(info)
    assert words in problem


def test_a_missing_weights_file_is_refused_before_openvino_sees_it(tmp_path):
    folder = fake_export(tmp_path / "m")
    (folder / "openvino_model.bin").unlink()
    with pytest.raises(ModelError, match="missing openvino_model.bin. Export the model"):
        resolve(folder)


def test_without_records_a_truncated_bin_is_still_found_from_its_xml(tmp_path):
    folder = fake_export(tmp_path / "m", record=False)
    (folder / "openvino_tokenizer.bin").write_bytes(bytes(40))
    assert verify(resolve(folder)) == ["openvino_tokenizer.bin is truncated (40 bytes, openvino_tokenizer.xml needs 48)"]


@pytest.mark.parametrize("kind, command", [("default", "ovchat export default --force"),
                                           ("hf", "ovchat export /src/model.gguf")])
def test_the_message_says_how_to_rebuild_the_folder(tmp_path, kind, command):
    folder = fake_export(tmp_path / "m", source_kind=kind)
    (folder / "config.json").write_text("{}")
    message = damaged_files_message(resolve(folder))
    assert "config.json is" in message and command in message


def test_info_verify_exits_1_naming_the_file(tmp_path):
    folder = fake_export(tmp_path / "m")
    ok = subprocess.run([sys.executable, "-m", "ovchat", "info", str(folder), "--verify"], capture_output=True, text=True)
    assert ok.returncode == 0 and "verified: 8 files" in ok.stderr
    (folder / "openvino_detokenizer.xml").write_text(IR_XML.replace("fake", "fakf"))
    bad = subprocess.run([sys.executable, "-m", "ovchat", "info", str(folder), "--verify"], capture_output=True, text=True)
    assert bad.returncode == 1 and "DAMAGED: openvino_detokenizer.xml was altered" in bad.stderr
    assert "ovchat export default --force" in bad.stderr


@pytest.fixture
def default_model_copy(default_model_dir, tmp_path):
    """A copy of the default model whose manifest records its files, as `ovchat export` now writes it."""
    copy = shutil.copytree(default_model_dir, tmp_path / "model")
    manifest = json.loads((copy / MANIFEST).read_text())
    if "files" not in manifest:  # exported before the records existed
        manifest["files"] = file_records(copy)
        (copy / MANIFEST).write_text(json.dumps(manifest))
    return copy


@pytest.mark.parametrize("records", [True, False])
def test_a_truncated_model_fails_to_load_naming_the_file(default_model_copy, records):
    if not records:
        (default_model_copy / MANIFEST).unlink()
    weights = default_model_copy / "openvino_model.bin"
    with open(weights, "r+b") as f:
        f.truncate(weights.stat().st_size // 2)
    with pytest.raises(ModelError) as error:
        Engine.load(default_model_copy, cache_dir=False, warmup=False)
    assert "openvino_model.bin is truncated" in str(error.value) and "Re-export it" in str(error.value)
