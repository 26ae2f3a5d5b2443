"""The server's pure parts, no model, no sockets: request validation, options, admission, the
client's mapping of CLI flags."""

import json
import argparse
import asyncio

import pytest

from ovchat.server import protocol
from ovchat.server.client import Client, ServerError, request_body
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
    ("foo", 1), ("tools", [{"type": "function", "function": {"name": "f"}}]), ("logprobs", True),
    ("logit_bias", {"1": 5}), ("top_logprobs", 2),
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
    assert generation_options(parse_chat({"messages": HI, "ignore_eos": True}, 4).sampling, 16, True).ignore_eos
    assert refused(parse_chat, {"messages": HI, "ignore_eos": "yes"}).param == "ignore_eos"


def test_values_that_change_nothing_are_accepted():
    parsed = parse_chat({"messages": HI, "logprobs": False, "n": 1, "tools": [], "response_format": {"type": "text"},
                         "user": "u1", "presence_penalty": None, "stream": False, "logit_bias": {}}, 4)
    assert parsed.sampling.n == 1 and parsed.sampling.presence_penalty == 0.0


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
    assert (s.max_tokens, s.stop, s.n, s.stream, s.include_usage, s.top_k) == (9, ("END",), 3, True, True, None)
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


def test_requests_are_greedy_unless_they_ask_for_sampling():
    sampling = parse_chat({"messages": HI}, 4).sampling
    options = generation_options(sampling, default_max_tokens=100, chat=True)
    assert options.greedy and options.max_new_tokens == 100 and options.apply_chat_template
    hot = generation_options(parse_chat({"messages": HI, "temperature": 0.7, "seed": 5}, 4).sampling, 100, True, index=2)
    assert not hot.greedy and hot.temperature == pytest.approx(0.7) and hot.seed == 7  # a seed per choice
    nucleus = generation_options(parse_chat({"messages": HI, "top_p": 0.9}, 4).sampling, 100, True)
    assert not nucleus.greedy and nucleus.temperature == 1.0  # OpenAI's default temperature
    cold = generation_options(parse_chat({"messages": HI, "temperature": 0, "top_p": 0.9}, 4).sampling, 100, False)
    assert cold.greedy and not cold.apply_chat_template
    pen = generation_options(parse_chat({"messages": HI, "presence_penalty": 1, "frequency_penalty": -1,
                                         "repetition_penalty": 1.2}, 4).sampling, 100, True)
    assert (pen.presence_penalty, pen.frequency_penalty, pen.repetition_penalty) == (1.0, -1.0, 1.2)


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
    args = argparse.Namespace(max_new_tokens=None, model=None, sample=False, temperature=0.9, top_p=0.5, top_k=None,
                              seed=3, repetition_penalty=None, stop=["\n\n"])
    assert request_body(args) == {"max_tokens": 256, "temperature": 0, "stop": ["\n\n"]}  # greedy without --sample
    args.sample, args.model = True, "m"
    assert request_body(args) == {"max_tokens": 256, "model": "m", "temperature": 0.9, "top_p": 0.5, "seed": 3,
                                  "stop": ["\n\n"]}


def test_the_client_takes_a_base_url_with_or_without_v1():
    assert Client("http://127.0.0.1:8000/v1/")._prefix == ""
    assert Client("127.0.0.1:8000")._port == 8000
    with pytest.raises(ServerError):
        Client("ftp://example")
