"""The benchmark suite: report structure, registry, skips, the synthetic vocabulary. Never a speed."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ovchat.benchmarks import phi3_shaped, report, runner
from ovchat.benchmarks.backends import BACKENDS, MAIN_BACKENDS, ModelFiles, create, unavailable
from ovchat.benchmarks.pairing import paired, paired_ratios, rotation, stats
from ovchat.benchmarks.registry import SCENARIOS
from ovchat.benchmarks.scenarios import QUICK, Scenario, WorkerError

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
                         "status": "skipped", "reason": "no GPU here"}],
            "ratios": [{"scenario": "latency", "model": "m", "device": "CPU", "pair": "ovchat/genai",
                        "figure": "TPOT ms @32", "per_rep": [0.98, 1.02], "median": 1.0, "min": 0.98, "max": 1.02,
                        "n": 2}]}


def test_stats_gives_median_min_max():
    assert stats([3, 1, 2]) == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}
    assert stats([]) == stats([None]) == {"median": None, "min": None, "max": None, "n": 0}
    assert stats([4, None, 2])["n"] == 2


def test_paired_takes_the_ratio_within_each_repetition():
    assert paired([10, 30, 5], [10, 20]) == {"median": 1.25, "min": 1.0, "max": 1.5, "n": 2}  # a third rep has no pair
    assert paired([10, None, 6], [0, 4, 3])["n"] == 1                                          # zero or missing: no ratio


def test_the_registry_lists_every_scenario_once_in_the_order_they_run():
    assert list(SCENARIOS) == ["latency", "chat", "load", "memory", "concurrency", "coldstart", "server",
                              "starts", "messages", "remember", "models", "agent-loop"]
    assert [name for name, s in SCENARIOS.items() if s.by_name_only] == ["models", "agent-loop"]  # not in the default suite
    assert all(name == scenario.name for name, scenario in SCENARIOS.items())


def test_markdown_shows_ratios_first_and_skipped_devices_in_the_cpu_gpu_table():
    text = report.markdown(_fake_report())
    assert text.index("## Ratios, paired per repetition") < text.index("## Generation latency")
    assert "| m | CPU | latency | TPOT ms @32 | 1.00 (0.98–1.02, n=2) |" in text
    assert "| m | CPU | ovchat | 32 |" in text
    assert "## CPU vs GPU" in text and "skipped: no GPU here" in text
    assert "## Roofline" in text and "## Skipped and failed" in text


def test_achieved_bandwidth_is_bytes_per_step_times_tokens_per_s_against_this_runs_measurement():
    fake = _fake_report()
    fake["profile"] = {"new_tokens": 64}
    fake["models"]["m"]["roofline"]["ir"]["kv_bytes_per_token"] = 1000
    # median TPOT 2 ms -> 500 tokens/s; a step reads 1e9 weight bytes + 1000 B x (32 + 64 / 2) of KV
    expected = (10**9 + 1000 * 64) * 500 / 1e9
    entry = fake["entries"][0]
    assert report.achieved_bandwidth(fake, entry, 32, 500.0) == pytest.approx(expected)
    text = report.markdown(fake)
    assert f"| {expected:.1f} | {expected / fake['bandwidth_gbs']:.0%} |" in text
    assert "measured in this run (10.0 GB/s)" in text
    assert report.achieved_bandwidth(fake, dict(entry, backend="llamacpp"), 32, 500.0) is None  # no GGUF figure


def test_rotation_puts_every_backend_in_every_position_once():
    backends = ["ovchat", "genai", "optimum", "llamacpp"]
    orders = [rotation(backends, rep) for rep in range(4)]
    assert orders[0] == backends and orders[1] == ["genai", "optimum", "llamacpp", "ovchat"]
    for position in range(4):
        assert sorted(order[position] for order in orders) == sorted(backends)
    assert rotation([], 3) == []


def test_ratios_are_paired_within_a_repetition_then_summarized():
    figures = {"ovchat": {0: {"t": 10.0}, 1: {"t": 30.0}, 2: {"t": 5.0}},
               "genai": {0: {"t": 10.0}, 1: {"t": 20.0}},   # rep 2 missing: not paired
               "llamacpp": {1: {"t": 60.0}}}
    rows = {r["pair"]: r for r in paired_ratios(figures, {"scenario": "s"})}
    assert rows["ovchat/genai"]["per_rep"] == [1.0, 1.5]
    assert [rows["ovchat/genai"][k] for k in ("median", "min", "max")] == [1.25, 1.0, 1.5]
    assert rows["ovchat/llamacpp"]["per_rep"] == [0.5] and rows["ovchat/llamacpp"]["scenario"] == "s"
    assert "ovchat/optimum" not in rows


class _FakeContext:
    profile = QUICK
    log_name = ""


def test_runner_interleaves_backends_and_pairs_their_ratios():
    calls = []

    def run_rep(ctx, files, device, backend, rep):
        calls.append((rep, backend))
        if backend == "optimum" and rep == 1:
            raise WorkerError("crashed")
        return {"t": {"ovchat": 1.0, "genai": 2.0, "optimum": 4.0}[backend]}

    scenario = Scenario("fake", "a fake", run_rep, summarize=lambda reps: {"n": len(reps)},
                        figures=lambda rep: {"t": rep["t"]}, reps=lambda p: 3)
    rep_report = {"entries": [], "ratios": []}
    runner.run_interleaved(rep_report, scenario, ModelFiles("m", ir="dir"), "CPU", ["ovchat", "genai", "optimum"],
                           {}, _FakeContext(), log=lambda m: None, progress=lambda: None)
    assert calls[:3] == [(0, "ovchat"), (0, "genai"), (0, "optimum")]
    assert calls[3:6] == [(1, "genai"), (1, "optimum"), (1, "ovchat")]
    assert calls[6:] == [(2, "ovchat"), (2, "genai")]   # optimum failed in rep 1: dropped afterwards
    by = {e["backend"]: e for e in rep_report["entries"]}
    assert by["ovchat"]["status"] == "ok" and by["ovchat"]["data"] == {"n": 3}
    assert [p["position"] for p in by["ovchat"]["positions"]] == [0, 2, 0]
    assert by["optimum"]["status"] == "error" and "crashed" in by["optimum"]["reason"]
    ratios = {r["pair"]: r for r in rep_report["ratios"]}
    assert ratios["ovchat/genai"]["per_rep"] == [0.5, 0.5, 0.5]
    assert "ovchat/optimum" not in ratios   # a backend that failed is not paired


def test_an_extra_backend_runs_only_where_a_scenario_asks_for_it():
    def run_rep(ctx, files, device, backend, rep):
        return {"t": 1.0}

    for backends, expected in ((MAIN_BACKENDS, ["ovchat"]), (BACKENDS, ["ovchat", "genai-pa"])):
        scenario = Scenario("fake", "a fake", run_rep, summarize=lambda reps: {}, figures=lambda rep: {"t": rep["t"]},
                            reps=lambda p: 1, backends=backends)
        rep_report = {"entries": [], "ratios": []}
        runner.run_interleaved(rep_report, scenario, ModelFiles("m", ir="dir"), "CPU", ["ovchat", "genai-pa"],
                               {}, _FakeContext(), log=lambda m: None, progress=lambda: None)
        assert [e["backend"] for e in rep_report["entries"]] == expected


def test_each_scenario_lists_only_backends_it_can_run():
    # The worker-process scenarios run the in-process adapters; the server, starts, messages, remember and
    # coldstart scenarios own their special backends (llama-server, ovchat-single, ovchat-client).
    special = {"llama-server", "ovchat-single", "ovchat-process", "ovchat-client"}
    for name, scenario in SCENARIOS.items():
        if name not in ("server", "starts", "messages", "remember", "coldstart", "models", "agent-loop"):
            assert not special & set(scenario.backends), (name, scenario.backends)
    assert SCENARIOS["chat"].backends == MAIN_BACKENDS + ("genai-pa",)


def test_genai_pa_differs_from_genai_only_by_its_attention_backend():
    genai = create("genai").properties("LATENCY", None)
    paged = create("genai-pa").properties("LATENCY", None)
    assert genai["ATTENTION_BACKEND"] == "SDPA" and paged.pop("ATTENTION_BACKEND") == "PA"
    assert {k: v for k, v in genai.items() if k != "ATTENTION_BACKEND"} == paged


def test_absent_device_and_missing_files_are_skip_reasons():
    assert "GPU" in unavailable("llamacpp", ModelFiles("m", gguf="x.gguf"), "GPU")
    assert "no GGUF" in unavailable("llamacpp", ModelFiles("m", ir="dir"), "CPU") or \
        "not installed" in unavailable("llamacpp", ModelFiles("m", ir="dir"), "CPU")
    assert unavailable("genai", ModelFiles("m", ir="dir"), "CPU") is None
    _, absent = runner.device_plan(["CPU", "NOSUCH"])
    assert "NOSUCH" in absent


def test_reports_go_under_the_current_directory_never_beside_the_package(tmp_path, monkeypatch):
    import argparse
    from ovchat.benchmarks import cli
    parser = cli.setup_arg_parser(argparse.ArgumentParser())
    monkeypatch.chdir(tmp_path)
    out = cli.report_folder(parser.parse_args(["--quick"]))
    assert out.parent == tmp_path / "bench-results" and out.name.endswith("-quick")
    assert cli.report_folder(parser.parse_args(["--out", "elsewhere"])) == Path("elsewhere")


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
    cmd = [sys.executable, "-m", "ovchat.benchmarks", "--quick", "--model", str(tiny_phi3_dir), "--backend", "ovchat",
           "--backend", "genai", "--backend", "llamacpp", "--backend", "genai-pa",
           "--scenario", "latency", "--scenario", "memory", "--scenario", "chat",
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
    assert {"start", "end"} <= set(data["load_average"]) and data["machine"]["ovchat_commit"]
    pairs = {(r["scenario"], r["pair"], r["figure"]) for r in data["ratios"]}
    assert ("latency", "ovchat/genai", "TPOT ms @32") in pairs and ("memory", "ovchat/genai", "peak RSS MB") in pairs
    # genai-pa (PagedAttention) is measured in the chat only, where the attention backends differ
    assert by[("chat", "CPU", "genai-pa")]["status"] == "ok" and ("latency", "CPU", "genai-pa") not in by
    assert len(by[("chat", "CPU", "genai-pa")]["data"]["summary"]) == QUICK.chat_turns
    assert ("chat", "ovchat/genai-pa", "TTFT ms, last turn") in pairs
    assert "latency_ratios" in last
    text = (out / "bench.md").read_text()
    assert "## Ratios, paired per repetition" in text and "## Generation latency" in text


def test_the_agent_loop_grows_by_one_call_and_result_a_turn_and_gives_llama_server_tools():
    from types import SimpleNamespace

    from ovchat.benchmarks import agent_loop_scenario as loop

    first, sixth = loop.conversation("S", 1), loop.conversation("S", 6)
    assert [m["role"] for m in first] == ["system", "user"] and sixth[:2] == first
    assert [m["role"] for m in sixth[2:]] == ["assistant", "tool"] * 5
    assert all(m["tool_calls"][0]["id"] == t["tool_call_id"] for m, t in zip(sixth[2::2], sixth[3::2]))
    assert len(loop.tools()) == 6 and len({t["function"]["name"] for t in loop.tools()}) == 6
    profile = SimpleNamespace(server_prompts=[32], server_new_tokens=64, timeout_s=60, ovchat_serve_cmd="")
    files = SimpleNamespace(ir="/m", gguf="/m.gguf")
    command = loop._spec("llama-server", files, profile).command
    assert "--jinja" in command and command[command.index("-c") + 1] == str(loop.CONTEXT)
    assert "--jinja" not in loop._spec("ovchat-process", files, profile).command
