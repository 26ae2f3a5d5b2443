"""studies/decode_profile.py: how a decode step's split and the levers' ratios are computed. Never a speed."""

import pytest

from studies import decode_profile as dp


def _rep(step: float, infer: float | None = None, **extra) -> dict:
    return dict({"tpot_ms": step + 1, "median_ms": step, "infer_median_ms": infer if infer is not None else step},
                **extra)


def _samples() -> dict:
    return {32: {"kernels": [_rep(10.0), _rep(20.0)],
                 "genai-none": [_rep(9.0, 8.5, sampling_ms=0.1), _rep(18.0, 17.0, sampling_ms=0.1)],
                 "genai-tokens": [_rep(9.5, 9.0, sampling_ms=0.1), _rep(18.0, 17.0, sampling_ms=0.1)],
                 "engine": [_rep(10.0), _rep(19.0)]}}


def test_split_takes_differences_within_a_repetition_then_their_median():
    split = dp.split(_samples())["32"]
    assert split["kernels_ms"]["median"] == 15.0
    assert (split["genai_step_ms"]["min"], split["genai_step_ms"]["max"]) == (-2.0, -1.0)
    assert split["genai_outside_infer_ms"]["median"] == pytest.approx(0.75)   # (0.5 + 1.0) / 2
    assert split["engine_path_ms"]["median"] == 1.0                            # 1.0 and 1.0
    assert split["token_streamer_ms"]["median"] == 0.25
    assert split["text_streamer_ms"] is None and split["llamacpp_ms"] is None  # not measured


def test_ratios_are_paired_per_repetition_on_the_mean_and_the_median_step():
    rows = dp.summarise(_samples(), "kernels")["32"]
    assert rows["kernels"]["ratio"]["median"] == 1.0
    assert rows["engine"]["ratio_median"]["min"] == 0.95   # 19 / 20
    assert rows["engine"]["ratio_median"]["max"] == 1.0                           # 10 / 10
    assert rows["genai-none"]["ratio"]["max"] == pytest.approx(10 / 11)          # (9 + 1) / (10 + 1)


def test_every_lever_is_measured_against_the_engines_own_properties():
    for lever, variants in dp.LEVERS.items():
        assert variants and all(len(props) == 1 for props in variants.values()), lever
    assert {"threads", "pinning", "kv-cache", "dynamic-quant", "attention"} <= set(dp.LEVERS)
    text = dp.printable({"load_average": {"start": [1, 1, 1]}, "compiled_properties": {},
                         "levers": {"threads": {"summary": dp.summarise(
                             {32: {"default": [_rep(10.0)], "threads-1": [_rep(12.0)]}}, "default")}}})
    assert "| 32 | threads-1 |" in text and "1.20 (1.20–1.20)" in text
