"""Options are validated on construction and map onto OpenVINO's own config objects."""

import openvino_genai as ov_genai
import pytest

from ovchat.engine import GenerationOptions, LoadOptions, OptionsError


@pytest.mark.parametrize("kwargs", [
    {"max_new_tokens": 0}, {"max_new_tokens": -5}, {"max_new_tokens": 1.5},
    {"temperature": -0.1}, {"top_p": 0}, {"top_p": 1.01}, {"top_k": -1},
    {"repetition_penalty": 0}, {"seed": -1}, {"stop": ("",)},
    {"presence_penalty": 2.5}, {"frequency_penalty": -3}, {"frequency_penalty": "1"},
])
def test_invalid_generation_options_raise_with_the_field_name(kwargs):
    with pytest.raises(OptionsError) as error:
        GenerationOptions(**kwargs)
    assert next(iter(kwargs)) in str(error.value) or "stop" in str(error.value)


def test_options_error_is_also_a_value_error():
    with pytest.raises(ValueError):
        GenerationOptions(top_p=2)


def test_greedy_options_turn_off_sampling():
    config = GenerationOptions(max_new_tokens=7, temperature=0.7).apply_to(ov_genai.GenerationConfig())
    assert config.max_new_tokens == 7
    assert config.do_sample is False


def test_sampling_options_reach_the_generation_config():
    options = GenerationOptions(do_sample=True, temperature=0.5, top_p=0.9, top_k=40, seed=3,
                                repetition_penalty=1.1, presence_penalty=0.5, frequency_penalty=-0.25,
                                stop="END", ignore_eos=True)
    config = options.apply_to(ov_genai.GenerationConfig())
    assert config.do_sample and config.top_k == 40 and config.rng_seed == 3 and config.ignore_eos
    assert config.temperature == pytest.approx(0.5) and config.top_p == pytest.approx(0.9)
    assert config.repetition_penalty == pytest.approx(1.1)
    assert (config.presence_penalty, config.frequency_penalty) == pytest.approx((0.5, -0.25))
    assert config.stop_strings == {"END"}


def test_load_options_become_the_seeds_compile_properties():
    props = LoadOptions(cache_dir="/tmp/x", properties={"KV_CACHE_PRECISION": "u8"}).to_properties()
    assert props == {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1", "CACHE_DIR": "/tmp/x",
                     "ATTENTION_BACKEND": "SDPA", "KV_CACHE_PRECISION": "u8"}


def test_the_compile_cache_is_on_by_default_and_can_be_turned_off(tmp_path, monkeypatch):
    monkeypatch.setenv("OVCHAT_CACHE", str(tmp_path))
    assert LoadOptions().to_properties()["CACHE_DIR"] == str(tmp_path / "compiled")
    assert "CACHE_DIR" not in LoadOptions(cache_dir=False).to_properties()


def test_user_properties_win_over_engine_defaults():
    assert LoadOptions(properties={"ATTENTION_BACKEND": "PA"}).to_properties()["ATTENTION_BACKEND"] == "PA"
    assert "ATTENTION_BACKEND" not in LoadOptions(device="NPU").to_properties()


def test_an_engine_for_chats_runs_on_paged_attention_unless_a_property_says_otherwise():
    # PA's prefill stays flat as a chat's history grows (ovchat chat loads with for_chat=True)
    assert LoadOptions().to_properties()["ATTENTION_BACKEND"] == "SDPA"
    assert LoadOptions(for_chat=True).to_properties()["ATTENTION_BACKEND"] == "PA"
    assert LoadOptions(for_chat=True, properties={"ATTENTION_BACKEND": "SDPA"}).to_properties()["ATTENTION_BACKEND"] == "SDPA"
    assert "ATTENTION_BACKEND" not in LoadOptions(for_chat=True, device="NPU").to_properties()


@pytest.mark.parametrize("kwargs", [{"performance_hint": "FAST"}, {"num_streams": 0}])
def test_invalid_load_options_raise(kwargs):
    with pytest.raises(OptionsError):
        LoadOptions(**kwargs)


def test_attention_backends_exist_on_cpu_and_gpu_whatever_the_spelling():
    from ovchat.engine.options import has_attention_backends
    assert all(has_attention_backends(d) for d in ("CPU", "cpu", " gpu.1 ", "GPU"))
    assert not any(has_attention_backends(d) for d in ("NPU", "AUTO:GPU,CPU", "hetero:GPU,CPU"))
