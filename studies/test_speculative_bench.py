"""The speculative-decoding bench's own logic: backend names, choices, pairing, the report. No model."""

import json

import pytest

from studies import speculative
from studies.speculative_worker import ovchat_kwargs


def test_backend_names_give_their_engine_arguments():
    assert ovchat_kwargs("ovchat") == {}
    assert ovchat_kwargs("ovchat-pa") == {"ATTENTION_BACKEND": "PA"}
    assert ovchat_kwargs("ovchat-lookup") == {"prompt_lookup": True, "num_assistant_tokens": 5}
    assert ovchat_kwargs("ovchat-lookup-k3") == {"prompt_lookup": True, "num_assistant_tokens": 3}
    assert ovchat_kwargs("ovchat-lookup-k4-n2") == {"prompt_lookup": True, "num_assistant_tokens": 4, "max_ngram_size": 2}
    assert ovchat_kwargs("llamacpp") is None and ovchat_kwargs("ovchat-lookup-kx") is None


def test_unknown_tasks_and_backends_are_refused_naming_the_choices():
    assert speculative.parse_list("free chat, grounded edit", speculative.TASKS, "task") == ["free chat", "grounded edit"]
    assert speculative.parse_list("ovchat,ovchat-lookup-k3-n2,llamacpp", None, "backend") == \
        ["ovchat", "ovchat-lookup-k3-n2", "llamacpp"]
    with pytest.raises(SystemExit, match="Unknown task chat: choose among grounded edit"):
        speculative.parse_list("chat", speculative.TASKS, "task")
    with pytest.raises(SystemExit, match="Unknown backend vllm.*ovchat-lookup-k<K>"):
        speculative.parse_list("ovchat,vllm", None, "backend")


def test_an_ir_folder_without_gguf_is_refused_only_when_llamacpp_runs(tmp_path):
    (tmp_path / "openvino_model.xml").write_text("")
    assert speculative.model_files(str(tmp_path), None, needs_gguf=False)[1:] == (str(tmp_path), "")
    with pytest.raises(SystemExit, match="no GGUF"):
        speculative.model_files(str(tmp_path), None, needs_gguf=True)
    assert speculative.model_files(str(tmp_path), "x.gguf", needs_gguf=True)[2] == "x.gguf"
    assert not speculative._random_weights(str(tmp_path))
    (tmp_path / "phi3_shaped.json").write_text(json.dumps({"random_weights": True}))
    assert speculative._random_weights(str(tmp_path))


def _run(tpot: float, text: str = "t") -> dict:
    return {"tpot_ms": tpot, "tokens_per_s": 1000 / tpot, "text": text, "tokens": 9}


def test_phi3_style_run_pairs_lookup_with_both_plain_backends_and_reports_without_structured():
    # the Phi-3 run: one task, no structured output, llama.cpp plain only
    raw = {"runs": {"free chat": {"ovchat": [_run(100), _run(200)], "ovchat-pa": [_run(120), _run(100)],
                                  "ovchat-lookup": [_run(150), _run(150)], "llamacpp": [_run(50, "x"), _run(100, "x")]}},
           "passes": {"free chat": {"ovchat": {"passes": None}, "ovchat-pa": {"passes": None},
                                    "ovchat-lookup": {"passes": 8, "decoded": 10}}}}
    rows = speculative.summarise(raw, 10)["free chat"]
    lookup = rows["ovchat-lookup"]
    assert lookup["vs_ovchat"] == {"median": 1.125, "min": 0.75, "max": 1.5, "n": 2}
    assert lookup["vs_ovchat_pa"] == {"median": 1.375, "min": 1.25, "max": 1.5, "n": 2}
    assert lookup["vs_llamacpp_best"]["median"] == 2.25
    assert lookup["tokens_per_pass"] == 1.25 and lookup["acceptance"] == pytest.approx(0.05)  # 0.25 of 5 guesses
    assert lookup["same_text_as_plain"] is True and rows["llamacpp"]["same_text_as_plain"] is True
    report = {"date": "2026-12-01", "model": "phi3-mini-shaped (3.8B, random)", "random_weights": True,
              "machine": {"cpu": "X"}, "load_before": [1, 1, 1], "load_after": [2, 2, 2], "commit": "abc",
              "versions": {}, "llama_threads": 2, "reps": 2, "new_tokens": 10, "speculation": {"free chat": rows},
              "structured": None}
    text = speculative.markdown(report)
    assert text.startswith("# Speculative decoding, phi3-mini-shaped (3.8B, random) (2026-12-01)")
    assert "Random weights" in text and "## Structured output" not in text
    assert "| ovchat-lookup | 150.00 | 6.7 | 1.12 [0.75-1.50] | 1.38 [1.25-1.50] | 2.25 [1.50-3.00] | 1.25 | 5 % | yes |" in text


def test_without_llamacpp_or_pa_the_missing_ratios_are_dashes():
    raw = {"runs": {"grounded edit": {"ovchat": [_run(100)], "ovchat-lookup-k3-n2": [_run(50, "u")]}},
           "passes": {"grounded edit": {"ovchat-lookup-k3-n2": {"passes": 4, "decoded": 10}}}}
    row = speculative.summarise(raw, 10)["grounded edit"]["ovchat-lookup-k3-n2"]
    assert row["vs_llamacpp_best"]["n"] == row["vs_ovchat_pa"]["n"] == 0 and row["same_text_as_plain"] is None
    assert row["acceptance"] == pytest.approx(0.5)  # 2.5 tokens per pass, 1.5 of 3 guesses
