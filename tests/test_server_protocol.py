"""The server's pure parts, no model, no sockets: request validation, options, admission, the
client's mapping of CLI flags."""

import json
import argparse
import asyncio

import pytest

from ovchat.engine import GenerationOptions
from ovchat.server import protocol
from ovchat.cli.remote import request_body
from ovchat.server.client import Client, ServerError
from ovchat.server.protocol import APIError, parse_chat, parse_completion
from ovchat.server.serving import Slots, generation_options

pytestmark = pytest.mark.timeout(60)
HI = [{"role": "user", "content": "hi"}]


def refused(parse, body, max_n=4) -> APIError:
    with pytest.raises(APIError) as caught:
        parse(body, max_n)
    assert caught.value.status == 400
    assert set(caught.value.body()["error"]) == {"message", "type", "param", "code"}
    return caught.value


@pytest.mark.parametrize("field, value", [
    ("foo", 1), ("logit_bias", {"1": 5}),
])
def test_a_field_the_server_does_not_support_is_refused_by_name(field, value):
    error = refused(parse_chat, {"messages": HI, field: value})
    assert error.param == field and field in error.message and error.code == "unsupported_parameter"


@pytest.mark.parametrize("field, value", [
    ("max_tokens", "5"), ("max_tokens", 0), ("temperature", 3), ("temperature", True), ("top_p", 0),
    ("n", 0), ("seed", -1), ("stop", ["a", "b", "c", "d", "e"]), ("stop", [""]), ("stream", "yes"),
    ("presence_penalty", 2.5), ("frequency_penalty", "1"), ("model", 7), ("stream_options", {"include_usage": 1}),
])
def test_a_value_of_the_wrong_type_or_range_is_refused_by_name(field, value):
    error = refused(parse_chat, {"messages": HI, "stream": True, field: value})
    assert error.param.startswith(field)


def test_response_format_maps_onto_structured_output():
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    as_object = parse_chat({"messages": HI, "response_format": {"type": "json_object"}}, 4).sampling
    as_schema = parse_chat({"messages": HI, "response_format": {"type": "json_schema", "json_schema": {
        "name": "city", "strict": True, "schema": schema}}}, 4).sampling
    assert (as_object.json_object, as_object.json_schema) == (True, None)
    assert (as_schema.json_object, json.loads(as_schema.json_schema)) == (False, schema)
    for bad in ({"type": "xml"}, {"type": "json_schema"}, {"type": "json_schema", "json_schema": {"schema": 3}}, "json"):
        assert refused(parse_chat, {"messages": HI, "response_format": bad}).param.startswith("response_format")
    assert refused(parse_chat, {"messages": HI, "response_format": {"type": "json_schema", "json_schema": {
        "schema": schema, "format": "x"}}}).param == "response_format.json_schema.format"


def test_ignore_eos_is_taken_as_vllm_and_llama_server_take_it():
    assert parse_chat({"messages": HI, "ignore_eos": True}, 4).sampling.ignore_eos is True
    assert parse_completion({"prompt": "hi", "ignore_eos": False}, 4).sampling.ignore_eos is False
    assert generation_options(parse_chat({"messages": HI, "ignore_eos": True}, 4).sampling, {}, 16, True).ignore_eos
    assert refused(parse_chat, {"messages": HI, "ignore_eos": "yes"}).param == "ignore_eos"


def test_logprobs_are_parsed_as_each_endpoint_names_them():
    chat = parse_chat({"messages": HI, "logprobs": True, "top_logprobs": 1}, 4).sampling
    assert (chat.logprobs, chat.top_logprobs) == (True, 1)
    assert parse_chat({"messages": HI, "logprobs": False}, 4).sampling.logprobs is False
    completion = parse_completion({"prompt": "hi", "logprobs": 0}, 4).sampling  # 0: the sampled token's, as OpenAI
    assert (completion.logprobs, completion.top_logprobs) == (True, 0)
    assert parse_completion({"prompt": "hi"}, 4).sampling.logprobs is False
    assert refused(parse_chat, {"messages": HI, "top_logprobs": 1}).param == "top_logprobs"  # needs logprobs: true
    assert refused(parse_chat, {"messages": HI, "logprobs": True, "top_logprobs": 21}).param == "top_logprobs"
    assert refused(parse_completion, {"prompt": "hi", "logprobs": 6}).param == "logprobs"


def test_top_logprobs_beyond_what_the_engine_knows_is_a_400_that_says_why():
    def options(body, chat=True):
        parse = parse_chat if chat else parse_completion
        return generation_options(parse(body, 4).sampling, {}, 16, chat)  # a model that recommends nothing: plain greedy
    assert options({"messages": HI, "logprobs": True, "top_logprobs": 1}).logprobs  # greedy: the chosen is the top
    for body in ({"messages": HI, "logprobs": True, "top_logprobs": 2},
                 {"messages": HI, "logprobs": True, "top_logprobs": 1, "temperature": 0.7},
                 {"messages": HI, "logprobs": True, "top_logprobs": 1, "frequency_penalty": 0.5}):
        with pytest.raises(APIError) as caught:
            options(body)
        assert caught.value.param == "top_logprobs" and "log-probability" in caught.value.message
    assert options({"messages": HI, "logprobs": True, "temperature": 0.7}).logprobs  # the chosen token's: always
    with pytest.raises(APIError) as caught:
        options({"prompt": "hi", "logprobs": 2}, chat=False)
    assert caught.value.param == "logprobs"


def test_values_that_change_nothing_are_accepted():
    parsed = parse_chat({"messages": HI, "logprobs": False, "n": 1, "tools": [], "response_format": {"type": "text"},
                         "user": "u1", "presence_penalty": None, "stream": False, "logit_bias": {}}, 4)
    assert parsed.sampling.n == 1 and parsed.sampling.presence_penalty is None  # null: not given


@pytest.mark.parametrize("messages, param", [
    ([], "messages"), ("hi", "messages"), ([{"role": "wizard", "content": "x"}], "messages[0].role"),
    ([{"role": "user", "content": "x", "name": "bob"}], "messages[0].name"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}], "messages[0].content[0]"),
    ([{"role": "user", "content": 5}], "messages[0].content"), ([{"role": "user", "content": "  "}], "messages[0].content"),
])
def test_bad_messages_are_refused_with_the_path_of_the_fault(messages, param):
    assert refused(parse_chat, {"messages": messages}).param == param


def test_messages_are_normalised_for_the_engine():
    parsed = parse_chat({"messages": [{"role": "developer", "content": "Be brief."},
                                      {"role": "user", "content": [{"type": "text", "text": "a"},
                                                                   {"type": "text", "text": "b"}]}]}, 4)
    assert parsed.messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "a\nb"}]


def test_sampling_fields_are_read_as_given():
    s = parse_chat({"messages": HI, "max_completion_tokens": 9, "stop": "END", "n": 3, "stream": True,
                    "stream_options": {"include_usage": True}, "top_k": -1}, 4).sampling
    assert (s.max_tokens, s.stop, s.n, s.stream, s.include_usage, s.top_k) == (9, ("END",), 3, True, True, 0)
    assert refused(parse_chat, {"messages": HI, "n": 5}).param == "n"  # above the server's concurrency
    assert refused(parse_chat, {"messages": HI, "max_tokens": 5, "max_completion_tokens": 6}).param == "max_tokens"
    assert refused(parse_chat, {"messages": HI, "stream_options": {"include_usage": True}}).param == "stream_options"


def test_a_completion_prompt_is_one_string_or_one_list_of_token_ids():
    assert parse_completion({"prompt": "Once"}, 1).prompt == "Once"
    assert parse_completion({"prompt": ["Once"]}, 1).prompt == "Once"
    assert parse_completion({"prompt": [1, 2, 3]}, 1).prompt == [1, 2, 3]
    for prompt in ("", ["a", "b"], [1, -2], [True], None):
        assert refused(parse_completion, {"prompt": prompt}).param == "prompt"
    assert refused(parse_completion, {"prompt": "x", "echo": True}).param == "echo"


def test_bad_json_is_a_400_in_the_openai_shape():
    for raw in (b"{bad", b"[1, 2]", b"\xff\xfe"):
        with pytest.raises(APIError) as caught:
            protocol.parse_json(raw)
        assert caught.value.status == 400 and caught.value.code == "invalid_json"


RECOMMENDED = {"repetition_penalty": 1.1, "frequency_penalty": 0.2}  # a model recommending greedy with penalties
SAMPLING_MODEL = {"do_sample": True, "temperature": 0.6, "top_p": 0.9, "top_k": 50}  # a generation_config.json that samples


def options_for(body: dict, defaults: dict = RECOMMENDED, index: int = 0, chat: bool = True):
    return generation_options(parse_chat({"messages": HI, **body}, 4).sampling, defaults, 100, chat, index)


def test_fields_a_request_leaves_out_take_the_models_recommended_decoding():
    plain = options_for({})
    assert plain.greedy and (plain.repetition_penalty, plain.frequency_penalty) == (1.1, 0.2)
    assert plain.max_new_tokens == 100 and plain.apply_chat_template
    assert options_for({}) == GenerationOptions(**RECOMMENDED, max_new_tokens=100)  # as `ovchat generate` builds it
    sampled = options_for({}, SAMPLING_MODEL)
    assert not sampled.greedy and (sampled.temperature, sampled.top_p, sampled.top_k) == (0.6, 0.9, 50)
    given = options_for({"frequency_penalty": 0, "repetition_penalty": 1.0, "presence_penalty": 0.5})
    assert (given.frequency_penalty, given.repetition_penalty, given.presence_penalty) == (0.0, 1.0, 0.5)


def test_a_temperature_decides_sampling_and_zero_is_greedy_whatever_the_model_says():
    assert options_for({"temperature": 0}, SAMPLING_MODEL).greedy
    hot = options_for({"temperature": 0.7, "seed": 5}, index=2)
    assert not hot.greedy and hot.temperature == pytest.approx(0.7) and hot.seed == 7  # a seed per choice
    assert hot.repetition_penalty == 1.1  # the penalties still come from the model
    cold = options_for({"temperature": 0, "top_p": 0.9}, chat=False)
    assert cold.greedy and not cold.apply_chat_template


def test_top_k_0_and_top_p_1_mean_off_and_never_switch_to_sampling():
    for off in ({"top_k": 0}, {"top_p": 1}, {"top_k": -1}, {"top_k": 0, "top_p": 1.0}):
        assert options_for(off).greedy, off
    unbounded = options_for({"top_k": 0, "top_p": 1}, SAMPLING_MODEL)  # the model samples: off overrides its 50 and 0.9
    assert not unbounded.greedy and (unbounded.top_k, unbounded.top_p, unbounded.temperature) == (0, 1.0, 0.6)
    nucleus = options_for({"top_p": 0.9})  # narrowing asks for sampling, at OpenAI's default temperature
    assert not nucleus.greedy and nucleus.temperature == 1.0 and nucleus.top_p == 0.9
    assert not options_for({"top_k": 40}).greedy


def test_slots_admit_in_order_and_refuse_beyond_the_queue():
    async def scenario():
        slots = Slots(limit=2, queue_limit=1)
        await slots.acquire(2)
        waiter = asyncio.ensure_future(slots.acquire(1))
        await asyncio.sleep(0)
        assert slots.waiting == 1 and not waiter.done()
        with pytest.raises(APIError) as full:
            await slots.acquire(1)
        assert full.value.status == 429 and full.value.headers["Retry-After"]
        slots.release(1)
        await waiter
        assert (slots.in_use, slots.waiting) == (2, 0)
        gone = asyncio.ensure_future(slots.acquire(1))  # a client that leaves while it waits
        await asyncio.sleep(0)
        gone.cancel()
        await asyncio.gather(gone, return_exceptions=True)
        assert slots.waiting == 0
        slots.release(2)
        assert slots.in_use == 0
    asyncio.run(scenario())


def test_cli_flags_become_the_same_request_as_without_a_server():
    args = argparse.Namespace(max_new_tokens=None, model=None, sample=False, greedy=False, temperature=0.9, top_p=0.5,
                              top_k=None, seed=3, repetition_penalty=None, stop=["\n\n"])
    assert request_body(args) == {"max_tokens": 256, "stop": ["\n\n"]}  # the server applies the model's decoding
    args.greedy = True
    assert request_body(args) == {"max_tokens": 256, "temperature": 0, "repetition_penalty": 1.0,
                                  "frequency_penalty": 0.0, "presence_penalty": 0.0,
                                  "stop": ["\n\n"]}  # plain greedy, as GenerationOptions()
    args.greedy, args.sample, args.model = False, True, "m"
    assert request_body(args) == {"max_tokens": 256, "model": "m", "temperature": 0.9, "top_p": 0.5, "seed": 3,
                                  "stop": ["\n\n"]}


def test_the_client_takes_a_base_url_with_or_without_v1():
    assert Client("http://127.0.0.1:8000/v1/")._prefix == ""
    assert Client("127.0.0.1:8000")._port == 8000
    with pytest.raises(ServerError):
        Client("ftp://example")
