"""Deterministic mode: `Engine.load(..., deterministic=True)` gives the same greedy answer for a
prompt whatever runs beside it. On the default model in batching mode, against each answer
computed alone on an engine without prefix caching: in a batch of 16, in two chats interleaved
turn by turn, behind a cached prefix, and with prompt-lookup speculation, exactly equal.
(With the CPU's defaults 4 to 7 of 16 answers differed in the same cases: studies/deterministic.py.)"""

import pytest

from determinism_cases import QUESTIONS, all_at_once, chats, one_at_a_time, with_system
from ovchat.engine import BatchOptions, Engine, LoadOptions, OptionsError
from ovchat.engine.options import DETERMINISTIC_PROPERTIES

TOKENS = 32


def test_deterministic_mode_sets_f32_without_dynamic_quantization():
    props = LoadOptions(deterministic=True).to_properties()
    assert {k: props[k] for k in DETERMINISTIC_PROPERTIES} == {
        "INFERENCE_PRECISION_HINT": "f32", "DYNAMIC_QUANTIZATION_GROUP_SIZE": "0", "KV_CACHE_PRECISION": "f32"}
    assert "INFERENCE_PRECISION_HINT" not in LoadOptions().to_properties()
    with pytest.raises(OptionsError, match="KV_CACHE_PRECISION=u8"):
        LoadOptions(deterministic=True, properties={"KV_CACHE_PRECISION": "u8"})
    LoadOptions(deterministic=True, properties={"KV_CACHE_PRECISION": "F32"})  # the same setting is fine


def test_the_cli_and_serve_take_deterministic():
    from ovchat.cli.flags import load_arguments
    from ovchat.cli.main import build_parser

    for command in (["generate", "hi"], ["serve"]):
        assert load_arguments(build_parser().parse_args([command[0], "--deterministic", *command[1:]]))["deterministic"]
        assert not load_arguments(build_parser().parse_args(command))["deterministic"]


@pytest.fixture(scope="module")
def reference(default_model_dir):
    """Each answer alone, on an engine that caches no prefix."""
    engine = Engine.load(default_model_dir, batching=BatchOptions(prefix_caching=False), deterministic=True)
    try:
        yield {"questions": one_at_a_time(engine, QUESTIONS, TOKENS),
               "with system": one_at_a_time(engine, with_system(QUESTIONS[:6]), TOKENS),
               "chats": chats(engine, TOKENS, interleaved=False)}
    finally:
        engine.close()


@pytest.fixture(scope="module")
def cached(default_model_dir):
    engine = Engine.load(default_model_dir, batching=BatchOptions(max_sequences=16), deterministic=True)
    yield engine
    engine.close()


def test_a_batch_of_16_answers_as_each_alone(reference, cached):
    assert all_at_once(cached, QUESTIONS, TOKENS) == reference["questions"]


def test_two_chats_interleaved_answer_as_each_alone(reference, cached):
    assert chats(cached, TOKENS, interleaved=True) == reference["chats"]


def test_answers_behind_a_cached_prefix_are_the_same(reference, cached):
    one_at_a_time(cached, with_system(QUESTIONS[-1:]), TOKENS)  # the system prompt is now a cached prefix
    assert one_at_a_time(cached, with_system(QUESTIONS[:3]), TOKENS) == reference["with system"][:3]
    assert all_at_once(cached, with_system(QUESTIONS[:6]), TOKENS) == reference["with system"]


def test_prompt_lookup_speculation_answers_as_plain_greedy(reference, default_model_dir):
    engine = Engine.load(default_model_dir, batching=BatchOptions(max_sequences=16), prompt_lookup=True, deterministic=True)
    try:
        assert all_at_once(engine, QUESTIONS, TOKENS) == reference["questions"]
    finally:
        engine.close()
