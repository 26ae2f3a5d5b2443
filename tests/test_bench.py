"""The benchmark suite: report structure, registry, skips, the synthetic vocabulary. Never a speed."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import phi3_shaped, report, runner
from benchmarks.backends import ModelFiles, unavailable
from benchmarks.scenarios import QUICK, SCENARIOS, stats

ROOT = Path(__file__).parent.parent


def _fake_report() -> dict:
    summary = {m: stats([1.0, 2.0, 3.0]) for m in ("ttft_ms", "tpot_ms", "tokens_per_s")}
    ok = lambda backend: {"scenario": "latency", "model": "m", "device": "CPU", "backend": backend, "status": "ok",
                          "data": {"lengths": {}, "summary": {"32": summary}, "load_ms": 1.0}}
    return {"date": "2026-01-01T00:00:00", "total_seconds": 60.0, "bandwidth_gbs": 10.0, "profile": {},
            "machine": {"cpu": "X", "physical_cores": 2, "logical_cores": 2, "memory_gib": 24, "os": "Linux",
                        "python": "3.11", "load_average": [0, 0, 0], "versions": {"openvino": "1"},
                        "ovchat_commit": "abc"},
            "devices": {"run": ["CPU"], "skipped": {"GPU": "no GPU here"}},
            "models": {"m": {"files": {}, "roofline": {"ir": {"decode_bytes": 10**9, "bound_tokens_per_s": 10.0}}}},
            "entries": [ok("ovchat"), ok("genai"),
                        {"scenario": "latency", "model": "m", "device": "GPU", "backend": "ovchat",
                         "status": "skipped", "reason": "no GPU here"}]}


def test_stats_gives_median_min_max():
    assert stats([3, 1, 2]) == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}
    assert stats([])["median"] is None


def test_every_issue_scenario_is_registered():
    assert {"latency", "chat", "load", "memory", "concurrency"} <= set(SCENARIOS)


def test_markdown_shows_ratios_and_skipped_devices_in_the_cpu_gpu_table():
    text = report.markdown(_fake_report())
    assert "| m | CPU | ovchat | 32 |" in text and "1.00" in text
    assert "## CPU vs GPU" in text and "skipped: no GPU here" in text
    assert "## Roofline" in text and "## Skipped and failed" in text


def test_absent_device_and_missing_files_are_skip_reasons():
    assert "GPU" in unavailable("llamacpp", ModelFiles("m", gguf="x.gguf"), "GPU")
    assert "no GGUF" in unavailable("llamacpp", ModelFiles("m", ir="dir"), "CPU") or \
        "not installed" in unavailable("llamacpp", ModelFiles("m", ir="dir"), "CPU")
    assert unavailable("genai", ModelFiles("m", ir="dir"), "CPU") is None
    _, absent = runner.device_plan(["CPU", "NOSUCH"])
    assert "NOSUCH" in absent


def test_phi3_vocabulary_is_deterministic_and_mergeable():
    pieces, merges = phi3_shaped.vocabulary(phi3_shaped.PHI3_MINI)
    assert len(pieces) == 32000 and len(set(pieces)) == 32000
    assert pieces[3] == "<0x00>" and pieces[258] == "<0xFF>"
    known = set(pieces[:259 + 73])
    for left, right in merges:  # every merged piece is built from pieces that exist before it
        assert left in known and right in known
        known.add(left + right)
    assert phi3_shaped.vocabulary(phi3_shaped.PHI3_MINI) == (pieces, merges)


@pytest.mark.slow
def test_quick_run_writes_the_report_structure(tmp_path, tiny_phi3_dir):
    out = tmp_path / "bench"
    cmd = [sys.executable, "-m", "benchmarks", "--quick", "--model", str(tiny_phi3_dir), "--backend", "ovchat",
           "--backend", "genai", "--backend", "llamacpp", "--scenario", "latency", "--scenario", "memory",
           "--device", "CPU", "--device", "GPU", "--reps", "1", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert last["bench"] == "ovchat" and last["error"] == 0
    data = json.loads((out / "bench.json").read_text())
    assert {"cpu", "physical_cores", "memory_gib", "versions"} <= set(data["machine"])
    assert data["bandwidth_gbs"] > 0
    by = {(e["scenario"], e["device"], e["backend"]): e for e in data["entries"]}
    for scenario in ("latency", "memory"):
        for backend in ("ovchat", "genai"):
            assert by[(scenario, "CPU", backend)]["status"] == "ok"
    lat = by[("latency", "CPU", "ovchat")]["data"]["summary"]
    assert set(lat) == {str(n) for n in QUICK.lengths}
    assert {"median", "min", "max"} <= set(lat["32"]["tpot_ms"])
    assert by[("latency", "CPU", "llamacpp")]["status"] == "skipped"  # this model has no GGUF
    if "GPU" not in data["devices"]["run"]:
        assert by[("latency", "GPU", "ovchat")]["status"] == "skipped"
    assert "## Generation latency" in (out / "bench.md").read_text()
