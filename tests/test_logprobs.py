"""Per-token records and log-probabilities from the engine (GenerationOptions(logprobs=True)), on
the tiny random Phi-3: what genai's sampler computed, in the batching mode and through EngineProcess."""

import math

import numpy as np
import pytest

from ovchat.engine import BatchOptions, Engine, EngineProcess, GenerationOptions, OptionsError

PROMPT = "What is the capital of France?"


@pytest.fixture(scope="module")
def batching(tiny_phi3_dir):
    engine = Engine.load(tiny_phi3_dir, batching=BatchOptions(max_sequences=4), cache_dir=False)
    yield engine
    engine.close()


def test_each_token_has_its_id_text_and_a_logprob_that_add_up_to_the_answer(batching):
    result = batching.generate(PROMPT, GenerationOptions(max_new_tokens=24, logprobs=True, ignore_eos=True))
    assert len(result.tokens) == result.output_tokens == 24
    assert "".join(token.text for token in result.tokens) == result.text
    assert all(token.logprob <= 0 and math.isfinite(token.logprob) for token in result.tokens)
    plain = batching.generate(PROMPT, GenerationOptions(max_new_tokens=24, ignore_eos=True))
    assert plain.text == result.text and plain.tokens == ()  # asking for logprobs changes no answer


def test_the_stream_yields_token_records_or_text_as_the_caller_wants(batching):
    options = GenerationOptions(max_new_tokens=16, logprobs=True, ignore_eos=True)
    with batching.stream(PROMPT, options) as stream:
        records = list(stream.tokens())
    with batching.stream(PROMPT, options) as stream:
        pieces = list(stream)
    assert records == list(stream.result.tokens) and len(records) == 16
    assert "".join(pieces) == stream.result.text == "".join(r.text for r in records)


def test_the_logprobs_are_the_ones_the_sampler_scored_the_answer_with(batching, tiny_phi3_dir):
    # LLMPipeline (the single mode) reports only the answer's total: the same sum, token for token.
    import openvino_genai as ov_genai
    result = batching.generate(PROMPT, GenerationOptions(max_new_tokens=12, logprobs=True, ignore_eos=True))
    pipeline = ov_genai.LLMPipeline(str(tiny_phi3_dir), "CPU", ATTENTION_BACKEND="PA")
    config = pipeline.get_generation_config()
    config.max_new_tokens, config.logprobs, config.ignore_eos = 12, 1, True
    ids = batching.tokenizer.encode(batching.tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}]),
                                    add_special_tokens=False)
    answer = pipeline.generate(ov_genai.TokenizedInputs(_tensor(ids), _tensor([1] * len(ids))), config)
    assert list(answer.tokens[0]) == [t.id for t in result.tokens]
    assert sum(t.logprob for t in result.tokens) == pytest.approx(answer.scores[0], abs=0.05)


def test_the_single_mode_refuses_logprobs_and_says_to_use_batching(tiny_phi3_dir):
    engine = Engine.load(tiny_phi3_dir, cache_dir=False, warmup=False)
    try:
        with pytest.raises(OptionsError, match="batching=True"):
            engine.generate(PROMPT, GenerationOptions(max_new_tokens=4, logprobs=True))
    finally:
        engine.close()


def test_token_records_cross_the_engine_process_pipe(tiny_phi3_dir, batching):
    options = GenerationOptions(max_new_tokens=8, logprobs=True, ignore_eos=True)
    engine = EngineProcess.load(tiny_phi3_dir, batching=BatchOptions(max_sequences=2), cache_dir=False)
    try:
        with engine.stream(PROMPT, options) as stream:
            records = list(stream.tokens())
    finally:
        engine.close()
    local = batching.generate(PROMPT, options).tokens
    assert [r.id for r in records] == [r.id for r in local]
    assert [r.logprob for r in records] == pytest.approx([r.logprob for r in local], abs=1e-3)


def _tensor(values):
    import openvino as ov
    return ov.Tensor(np.array([values], dtype=np.int64))
