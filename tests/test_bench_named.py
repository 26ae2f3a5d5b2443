"""`ovchat bench --model gemma3-270m`: a named real model exported on first use into the cache, run by
llama.cpp as the GGUF it was exported from; a base model's chat scenario is skipped, not failed;
the report sets ovchat beside llama.cpp per model. The fast tier builds no model and downloads nothing."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ovchat.benchmarks import named_export, report, runner, worker
from ovchat.benchmarks.backends import NO_TEMPLATE, ModelFiles
from ovchat.benchmarks.pairing import stats
from ovchat.benchmarks.scenarios import CHAT, QUICK, Skip
from ovchat.tools.export import EXPORTED_FILES
from ovchat.tools.named_models import NAMED

ROOT = Path(__file__).parent.parent
NAME = "gemma3-270m"


def _finished_export(folder: Path, sha256: str) -> None:
    """What `ovchat export` leaves behind, as far as is_valid_export reads it: its files and the manifest's source."""
    folder.mkdir(parents=True)
    for name in EXPORTED_FILES:
        (folder / name).write_text("")
    (folder / "ovchat.json").write_text(json.dumps({"source": {"kind": NAME, "sha256": sha256}}))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OVCHAT_CACHE", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # a folder named gemma3-270m here would win over the named model
    return tmp_path


def test_a_named_model_resolves_to_its_export_where_ovchat_export_puts_it_and_the_registry_gguf(cache):
    files = runner.resolve_model(NAME, build=False)
    assert NAME in files.name and files.ir is None and files.gguf is None   # nothing cached yet
    _finished_export(cache / "models" / NAME, NAMED[NAME].sha256)
    gguf = cache / "sources" / NAMED[NAME].gguf_name
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF")
    files = runner.resolve_model(NAME, build=False)
    assert files.ir == str(cache / "models" / NAME) and files.gguf == str(gguf)


def test_an_export_of_another_file_is_not_taken_for_the_named_model(cache):
    _finished_export(cache / "models" / NAME, "0" * 64)
    assert runner.resolve_model(NAME, build=False).ir is None


def test_a_finished_export_is_reused_without_running_the_export_again(cache, monkeypatch):
    _finished_export(cache / "models" / NAME, NAMED[NAME].sha256)
    monkeypatch.setattr(named_export.subprocess, "run", lambda *a, **k: pytest.fail("exported again"))
    assert named_export.ensure_ir(NAME) == cache / "models" / NAME


def test_a_folder_of_the_same_name_in_the_current_directory_is_that_folder(cache):
    (cache / NAME).mkdir()
    assert runner.resolve_model(NAME, build=False) == ModelFiles(NAME, NAME, None)


class _NoTemplate:
    def chat_unavailable(self):
        return NO_TEMPLATE

    def chat_turn(self, text, n):
        pytest.fail("chatted with a model that has no chat template")


def test_a_model_without_a_chat_template_skips_the_chat_scenario_with_the_reason():
    assert worker.task_chat(_NoTemplate(), {"warmup": 1, "reps": 1, "turns": 2, "new_tokens": 4}) == \
        {"skip": NO_TEMPLATE}

    class Ctx:
        profile = QUICK

        def spawn(self, job):
            return worker.task_chat(_NoTemplate(), job["params"])

    with pytest.raises(Skip, match="no chat template"):
        CHAT.run_rep(Ctx(), ModelFiles("m", ir="dir"), "CPU", "ovchat", 0)


def _latency_entry(model, backend, ttft, tpot):
    summary = {"32": {"ttft_ms": stats([ttft]), "tpot_ms": stats([tpot]), "tokens_per_s": stats([1000 / tpot])}}
    return {"scenario": "latency", "model": model, "device": "CPU", "backend": backend, "status": "ok",
            "data": {"summary": summary}}


def test_the_report_sets_ovchat_beside_llamacpp_for_every_model():
    ratio = lambda model, figure, value: {"scenario": "latency", "model": model, "device": "CPU",
                                          "pair": "ovchat/llamacpp", "figure": figure, "median": value,
                                          "min": value, "max": value, "n": 1}
    fake = {"entries": [_latency_entry("default", "ovchat", 40, 10.0), _latency_entry("default", "llamacpp", 80, 8.0),
                        _latency_entry("gemma", "ovchat", 60, 20.0), _latency_entry("gemma", "llamacpp", 120, 16.0),
                        _latency_entry("solo", "ovchat", 1, 1.0)],
            "ratios": [ratio(m, f, v) for m in ("default", "gemma") for f, v in (("TTFT ms @32", 0.5),
                                                                                 ("TPOT ms @32", 1.25))]}
    lines = report.versus_llamacpp_section(fake)
    assert "| default | CPU | 32 | 40 (40–40) | 80 (80–80) | 0.50 (0.50–0.50, n=1) | 10.0 (10.0–10.0) | " \
           "8.0 (8.0–8.0) | 1.25 (1.25–1.25, n=1) |" in lines
    assert any(line.startswith("| gemma | CPU | 32 | 60 ") for line in lines)
    assert not any("solo" in line for line in lines)   # no llama.cpp figures to set beside
    assert report.versus_llamacpp_section({"entries": [], "ratios": []}) == []


@pytest.mark.named_model
@pytest.mark.slow
def test_bench_exports_gemma_on_first_use_and_runs_it_on_ovchat_and_llamacpp(tmp_path):
    """The real thing, in the user's cache ($OVCHAT_CACHE/models/gemma3-270m is kept: ~2.5 min the first time)."""
    pytest.importorskip("llama_cpp")
    out = tmp_path / "bench"
    cmd = [sys.executable, "-m", "ovchat.benchmarks", "--quick", "--model", NAME, "--backend", "ovchat",
           "--backend", "llamacpp", "--scenario", "latency", "--scenario", "chat", "--device", "CPU",
           "--lengths", "32", "--new-tokens", "4", "--reps", "1", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((out / "bench.json").read_text())
    (files,) = [m["files"] for m in data["models"].values()]
    assert files["ir"] and files["gguf"].endswith(NAMED[NAME].gguf_name)
    manifest = json.loads((Path(files["ir"]) / "ovchat.json").read_text())
    assert manifest["source"]["sha256"] == NAMED[NAME].sha256   # the same file on both sides
    by = {(e["scenario"], e["backend"]): e for e in data["entries"]}
    assert by[("latency", "ovchat")]["status"] == "ok" and by[("latency", "llamacpp")]["status"] == "ok"
    chat = by[("chat", "ovchat")]
    assert chat["status"] == "ok" or (chat["status"] == "skipped" and chat["reason"] == NO_TEMPLATE)
    assert "## Latency: ovchat beside llama.cpp, per model" in (out / "bench.md").read_text()
