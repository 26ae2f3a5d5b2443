"""A GGUF's export records its next-token agreement with llama.cpp on the same file
(tools/llama_cpp_agreement.py), or why it could not: llama-cpp-python missing, or a file llama.cpp
cannot load. Fast: the skip paths and the arithmetic; the figure itself is measured on the kept
exports of tests/test_gguf_kept.py."""

import sys

import numpy as np
import pytest

from ovchat.tools import export, fidelity, llama_cpp_agreement
from ovchat.tools.recipe import PRESETS

from test_model_files import gguf_bytes


def test_agreement_counts_next_token_positions_only():
    reference = np.array([1, 2, 3, 7])
    logits = np.eye(8)[[1, 0, 3, 5]]         # argmax 1, 0, 3, 5: the last position has no next token
    assert llama_cpp_agreement.top1_agreement(reference, logits) == pytest.approx(2 / 3)


def _passing(*args, **kwargs):
    """fidelity.measure's result for an export that passes (the float-source step, not under test)."""
    return fidelity.judge(0.9, 10.0, 10.5, vocab_size=1000)


def test_without_llama_cpp_python_a_gguf_export_records_why_and_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)   # `import llama_cpp` raises ImportError
    monkeypatch.setattr(fidelity, "measure", _passing)
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(gguf_bytes({"general.architecture": (8, "llama")}))
    record = export._check_fidelity(tmp_path, tmp_path, PRESETS["seed"], gguf)
    assert record["passed"] and set(record["llama_cpp"]) == {"skipped"}
    assert "llama-cpp-python is not installed" in record["llama_cpp"]["skipped"]
    lines = [line for line in capsys.readouterr().err.splitlines() if "llama.cpp" in line]
    assert len(lines) == 1 and "skipped" in lines[0] and "ovchat[bench]" in lines[0]


def test_a_hugging_face_source_has_no_llama_cpp_record(tmp_path, monkeypatch):
    monkeypatch.setattr(fidelity, "measure", _passing)
    assert "llama_cpp" not in export._check_fidelity(tmp_path, tmp_path, PRESETS["seed"], None)


def test_a_file_llama_cpp_cannot_load_is_recorded_as_skipped(tmp_path):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python (the bench extra) is what refuses the file")
    gguf = tmp_path / "broken.gguf"
    gguf.write_bytes(gguf_bytes({"general.architecture": (8, "llama")}, [("t.weight", 2)]))  # no tensor data
    record, line = llama_cpp_agreement.check(gguf, tmp_path)
    assert set(record) == {"skipped"} and "could not run broken.gguf" in record["skipped"]
    assert "\n" not in line and line.startswith("llama.cpp agreement skipped")
