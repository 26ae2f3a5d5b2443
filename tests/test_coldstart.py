"""benchmarks.coldstart: one fresh process per measurement, one JSON line back, every figure present.

Structure only: speeds are never asserted (the machine is shared)."""

import importlib.util

import pytest

from ovchat.benchmarks import coldstart

FIGURES = ("import_s", "load_s", "warmup_s", "first_ttft_s", "start_to_first_token_s", "second_ttft_ms",
           "ttft_ms", "tpot_ms", "peak_rss_mb")


def _check_figures(result: dict) -> None:
    for key in FIGURES:
        assert isinstance(result[key], float) and result[key] >= 0, key
    assert result["start_to_first_token_s"] >= result["load_s"] + result["first_ttft_s"]
    assert result["peak_rss_mb"] > 0


def test_engine_cold_start_reports_every_figure_and_its_warmup(tiny_phi3_dir):
    result = coldstart.measure("engine", str(tiny_phi3_dir), cache="cold", prompt_tokens=8, new_tokens=4,
                               drop_caches=False)
    _check_figures(result)
    assert result["warmup_s"] > 0 and result["warmup_s"] <= result["load_s"]
    assert (result["backend"], result["cache"], result["page_cache_dropped"]) == ("engine", "cold", False)


def test_llmpipeline_warm_cache_is_populated_before_the_timed_process(tiny_phi3_dir):
    result = coldstart.measure("llmpipeline", str(tiny_phi3_dir), cache="warm", prompt_tokens=8, new_tokens=4)
    _check_figures(result)
    assert result["warmup_s"] == 0
    assert "openvino" in result["versions"]


def test_scheduler_config_passes_through_json(tiny_phi3_dir):
    result = coldstart.measure("llmpipeline", str(tiny_phi3_dir), cache="none", prompt_tokens=8, new_tokens=2,
                               properties={"scheduler_config": {"cache_size": 1}})
    _check_figures(result)


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed")
def test_llama_cpp_cold_start_on_a_tiny_gguf():
    from ovchat.benchmarks import phi3_shaped
    gguf = phi3_shaped.ensure_gguf(phi3_shaped.TINY, phi3_shaped.NAME + "-tiny", log=lambda *_: None)
    result = coldstart.measure("llama.cpp", str(gguf), cache="none", prompt_tokens=8, new_tokens=4)
    _check_figures(result)


def test_unknown_backend_or_cache_state_is_refused():
    with pytest.raises(ValueError, match="backend"):
        coldstart.measure("onnx", "x")
    with pytest.raises(ValueError, match="cache"):
        coldstart.measure("engine", "x", cache="lukewarm")


def test_summary_gives_median_min_max():
    runs = [{"load_s": v} for v in (3.0, 1.0, 2.0)]
    summary = coldstart.summarize(runs)
    assert summary["load_s"] == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3} and summary["tpot_ms"]["n"] == 0
