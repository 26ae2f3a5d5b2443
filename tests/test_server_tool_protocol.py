"""Function calling on the wire, no model: request fields parsed and refused by name, and the
response shapes (message.tool_calls, streamed tool-call deltas) as OpenAI's clients read them."""

import json

import pytest

from ovchat.engine import ToolCall
from ovchat.engine.tool_parsers import CallDelta
from ovchat.server.protocol import APIError, Choice, Reply, parse_chat

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
ASK = [{"role": "user", "content": "Weather in Paris?"}]
CALLED = [*ASK, {"role": "assistant", "content": None, "tool_calls": [
    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}]


def refused(body) -> APIError:
    with pytest.raises(APIError) as caught:
        parse_chat(body, 4)
    assert caught.value.status == 400
    return caught.value


def test_tools_and_choices_are_parsed_into_the_engines_terms():
    parsed = parse_chat({"messages": ASK, "tools": [WEATHER], "parallel_tool_calls": False,
                         "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}, 4)
    sampling = parsed.sampling
    assert [t.name for t in sampling.tools] == ["get_weather"]
    assert (sampling.tool_choice, sampling.parallel_tool_calls) == ("get_weather", False)
    assert parse_chat({"messages": ASK}, 4).sampling.tool_choice == "auto"


def test_a_history_with_calls_and_results_is_accepted_as_the_sdk_sends_it():
    parsed = parse_chat({"messages": [*CALLED, {"role": "tool", "tool_call_id": "call_1", "name": "get_weather",
                                                "content": "18 C"}], "tools": [WEATHER]}, 4)
    assert parsed.messages[1]["content"] == "" and parsed.messages[1]["tool_calls"][0]["id"] == "call_1"
    assert parsed.messages[2] == {"role": "tool", "content": "18 C", "tool_call_id": "call_1", "name": "get_weather"}


@pytest.mark.parametrize("body, param", [
    ({"messages": ASK, "tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice"),
    ({"messages": ASK, "tools": [WEATHER], "tool_choice": "get_weather"}, "tool_choice"),  # OpenAI wants the object
    ({"messages": ASK, "tool_choice": "required"}, "tool_choice"),
    ({"messages": ASK, "tools": {"type": "function"}}, "tools"),
    ({"messages": ASK, "tools": [{"type": "function", "function": {"name": "a b"}}]}, "tools[0].function.name"),
    ({"messages": ASK, "tools": [{"type": "function", "function": {"name": "f", "parameters": "x"}}]},
     "tools[0].function.parameters"),
    ({"messages": [*CALLED, {"role": "tool", "tool_call_id": "call_2", "content": "x"}]}, "messages[2].tool_call_id"),
    ({"messages": [*ASK, {"role": "user", "content": "x", "tool_call_id": "call_1"}]}, "messages[1].tool_call_id"),
    ({"messages": [{"role": "user", "content": "hi", "tool_calls": []}]}, "messages[0].tool_calls"),
    ({"messages": [*ASK, {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "function": {
        "name": "get_weather", "arguments": "{oops"}}]}, {"role": "user", "content": "hi"}]},
     "messages[1].tool_calls[0].function.arguments"),
])
def test_bad_tool_fields_are_refused_naming_the_field(body, param):
    assert refused(body).param == param


def test_a_message_with_calls_carries_them_as_json_text_and_no_content():
    call = ToolCall("call_1", "get_weather", {"city": "Paris"})
    body = Reply("chat", "m").full([Choice(0, "", "tool_calls", 12, (call,))], 30)
    message = body["choices"][0]["message"]
    assert message["content"] is None and body["choices"][0]["finish_reason"] == "tool_calls"
    assert message["tool_calls"] == [{"id": "call_1", "type": "function",
                                      "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]


def test_a_streamed_call_starts_with_index_id_and_name_then_sends_argument_fragments():
    reply = Reply("chat", "m")
    first = json.loads(reply.chunk(0, tool_calls=[CallDelta(0, "call_1", "get_weather")])[6:])
    more = json.loads(reply.chunk(0, tool_calls=[CallDelta(0, arguments='{"city": ')])[6:])
    assert first["choices"][0]["delta"]["tool_calls"] == [
        {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]
    assert more["choices"][0]["delta"]["tool_calls"] == [{"index": 0, "function": {"arguments": '{"city": '}}]
