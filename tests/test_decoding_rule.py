"""The decoding a request gets for the penalties it leaves out (engine/decoding.py): the model's
recommended ones on free text, none inside structured output or tool calls, a value given always
as given; the same through the engine's API, the CLI's flags and the server's requests. And the
genai behaviour that rule rests on: which tokens each penalty weighs."""

import openvino_genai as ov_genai
import pytest

from ovchat.cli.flags import generation_options as cli_options
from ovchat.cli.main import build_parser
from ovchat.engine import GenerationOptions, recommended_options
from ovchat.engine.decoding import DEFAULT_DECODING, NO_PENALTY
from ovchat.server.protocol import parse_chat
from ovchat.server.serving import generation_options as server_options

PENALTIES = ("repetition_penalty", "frequency_penalty", "presence_penalty")
MODEL = {"repetition_penalty": 1.1, "frequency_penalty": 0.2, "presence_penalty": 0.3}  # a model recommending all three
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
SHAPES = {  # GenerationOptions fields that hold the answer to a shape
    "json_object": {"json_object": True},
    "json_schema": {"json_schema": {"type": "object", "properties": {"name": {"type": "string"}}}},
    "regex": {"regex": "[A-Z][a-z]+"},
    "grammar": {"grammar": 'root ::= "yes" | "no"'},
    "tools, auto": {"tools": (WEATHER,)},
    "tools, required": {"tools": (WEATHER,), "tool_choice": "required"},
    "tools, named": {"tools": (WEATHER,), "tool_choice": "get_weather"},
    "tools, unguided": {"tools": (WEATHER,), "constrain_tool_calls": False},
}


def penalties_of(config_or_options) -> tuple:
    return tuple(getattr(config_or_options, name) for name in PENALTIES)


def config_of(options: GenerationOptions) -> ov_genai.GenerationConfig:
    return options.apply_to(ov_genai.GenerationConfig())


def test_the_measured_default_never_weighs_on_the_prompt():
    # genai's repetition_penalty counts the prompt's tokens (test below); the default uses none of it
    assert DEFAULT_DECODING and "repetition_penalty" not in DEFAULT_DECODING
    assert set(DEFAULT_DECODING) <= {"frequency_penalty", "presence_penalty"}
    assert all(value > 0 for value in DEFAULT_DECODING.values())


def test_free_text_gets_the_models_recommended_penalties_in_its_generation_config():
    config = config_of(recommended_options(MODEL, max_new_tokens=32))
    assert penalties_of(config) == pytest.approx((1.1, 0.2, 0.3)) and not config.do_sample
    assert penalties_of(config_of(recommended_options(DEFAULT_DECODING))) == pytest.approx(
        (1.0, DEFAULT_DECODING.get("frequency_penalty", 0), DEFAULT_DECODING.get("presence_penalty", 0)))


@pytest.mark.parametrize("shape", SHAPES)
def test_a_shaped_answer_gets_no_penalty_it_did_not_ask_for(shape):
    sampling_model = {**MODEL, "do_sample": True, "temperature": 0.6, "top_p": 0.9}
    options = recommended_options(sampling_model, **SHAPES[shape])
    assert options.shaped
    config = config_of(options)
    assert penalties_of(config) == (1.0, 0.0, 0.0)
    assert config.do_sample and config.temperature == pytest.approx(0.6)  # the rest of the model's decoding stays


@pytest.mark.parametrize("shape", ["json_object", "tools, required"])
def test_a_penalty_given_is_honoured_as_given_inside_a_shape_too(shape):
    options = recommended_options(MODEL, **SHAPES[shape], frequency_penalty=0.5)
    assert penalties_of(config_of(options)) == pytest.approx((1.0, 0.5, 0.0))
    options = recommended_options(MODEL, **SHAPES[shape], repetition_penalty=1.3, presence_penalty=0.0)
    assert penalties_of(options) == (1.3, 0.0, 0.0)


def test_values_given_on_free_text_win_and_none_counts_as_left_out():
    options = recommended_options(MODEL, repetition_penalty=1.0, frequency_penalty=0.0, presence_penalty=None)
    assert penalties_of(options) == (1.0, 0.0, 0.3)
    assert recommended_options({}, json_object=True) == GenerationOptions(json_object=True)


def test_tools_not_offered_are_free_text():
    options = recommended_options(MODEL, tools=(WEATHER,), tool_choice="none")
    assert not options.shaped and penalties_of(options) == (1.1, 0.2, 0.3)


def _server(body: dict, defaults: dict = MODEL) -> GenerationOptions:
    return server_options(parse_chat({"messages": [{"role": "user", "content": "Paris?"}], **body}, 4).sampling,
                          defaults, 64, True)


@pytest.mark.parametrize("body", [
    {"response_format": {"type": "json_object"}},
    {"response_format": {"type": "json_schema", "json_schema": {"name": "c", "schema": {"type": "object"}}}},
    {"tools": [WEATHER], "tool_choice": "required"},
    {"tools": [WEATHER]},
])
def test_a_server_request_with_response_format_or_tools_leaving_penalties_out_gets_none(body):
    assert penalties_of(config_of(_server({**body, "temperature": 0}))) == (1.0, 0.0, 0.0)
    given = _server({**body, "temperature": 0, "frequency_penalty": 0.4, "repetition_penalty": 1.2})
    assert penalties_of(given) == (1.2, 0.4, 0.0)


def test_a_plain_server_request_gets_the_models_penalties():
    assert penalties_of(_server({"temperature": 0})) == (1.1, 0.2, 0.3)
    assert penalties_of(_server({"tools": [WEATHER], "tool_choice": "none"})) == (1.1, 0.2, 0.3)


def test_the_cli_follows_the_same_rule(tmp_path):
    from types import SimpleNamespace
    info = SimpleNamespace(generation_defaults=MODEL)

    def flags(*given):
        return cli_options(build_parser().parse_args(["generate", *given, "hello"]), info)
    assert penalties_of(flags()) == (1.1, 0.2, 0.3)
    assert penalties_of(flags("--json-object")) == (1.0, 0.0, 0.0)
    assert penalties_of(flags("--regex", "[a-z]+", "--repetition-penalty", "1.2")) == (1.2, 0.0, 0.0)
    tools = tmp_path / "tools.json"
    tools.write_text('[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]')
    assert penalties_of(flags("--tools", str(tools))) == (1.0, 0.0, 0.0)
    assert penalties_of(flags("--greedy", "--json-object")) == tuple(NO_PENALTY[name] for name in PENALTIES)


# What genai 2026.4 penalises, on a model whose logits are constants: token A 2.0, B 1.5, all
# others far below; greedy, 4 tokens. A prompt holding A shows whether a penalty counts the prompt.
A, B = 100, 200


@pytest.fixture(scope="module")
def constant_logits(tiny_phi3_dir):
    from constant_logits import constant_logits_pipeline
    return {sign: constant_logits_pipeline(tiny_phi3_dir, {A: sign * a, B: sign * b})
            for sign, (a, b) in ((1, (2.0, 1.5)), (-1, (1.0, 1.5)))}


def test_genai_weighs_the_prompt_with_the_repetition_penalty_only(constant_logits):
    from constant_logits import greedy_tokens
    positive = constant_logits[1]
    assert greedy_tokens(positive, [5, A]) == [A, A, A, A]
    # A's 2.0 / 2 = 1.0 < B's 1.5 from the first token on: the prompt's A counted
    assert greedy_tokens(positive, [5, A], repetition_penalty=2.0)[0] == B
    assert greedy_tokens(positive, [5, 6], repetition_penalty=2.0)[0] == A
    # frequency and presence: the prompt's A is not counted, the answer's are (2.0 - 0.3 n < 1.5 at n = 2)
    assert greedy_tokens(positive, [5, A], frequency_penalty=0.3) == [A, A, B, A]
    assert greedy_tokens(positive, [5, A], presence_penalty=1.0)[:2] == [A, B]


def test_genai_moves_a_negative_logit_up_with_frequency_and_presence_penalties(constant_logits):
    # Below zero genai adds the penalty (-1.0 + 1.0 = 0 beats -1.5): a repeated token with a
    # negative logit gains. The default's penalties rely on the chosen tokens' logits being positive.
    from constant_logits import greedy_tokens
    negative = constant_logits[-1]
    assert greedy_tokens(negative, [5, 6], frequency_penalty=1.0) == [A, A, A, A]
    assert greedy_tokens(negative, [5, 6], presence_penalty=1.0) == [A, A, A, A]
    assert greedy_tokens(negative, [5, A], repetition_penalty=2.0)[0] == B  # -1.0 * 2 < -1.5
