"""The Responses API (/v1/responses) with a fake engine (no model, seconds): the request rewritten
as a chat request, the Response object and the event stream as the official openai client reads
them, and its 400s. (Stored responses: test_server_responses_store.py.)"""

import json

import pytest

from server_harness import FakeEngine, request, running_server
from ovchat.server.protocol import APIError
from ovchat.server.responses_request import _messages, parse_responses

openai = pytest.importorskip("openai")
pytest.importorskip("uvicorn")

EVENT_ORDER = ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
               *["response.output_text.delta"] * 4, "response.output_text.done", "response.content_part.done",
               "response.output_item.done", "response.completed"]


@pytest.fixture(scope="module")
def served():
    engine = FakeEngine()
    with running_server(lambda: engine) as (url, _):
        yield openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=30), url, engine


def test_function_call_items_become_the_assistant_turn_and_tool_turn_of_a_chat():
    messages, sources = _messages([
        {"role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        {"type": "function_call", "call_id": "call_2", "name": "get_weather", "arguments": '{"city": "Rome"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "18 C"},
    ], "Be brief.")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool"]
    assert [c["id"] for c in messages[2]["tool_calls"]] == ["call_1", "call_2"]  # one turn: its text and calls
    assert messages[2]["tool_calls"][1]["function"] == {"name": "get_weather", "arguments": '{"city": "Rome"}'}
    assert messages[3] == {"role": "tool", "tool_call_id": "call_1", "content": "18 C"}
    assert sources == ["instructions", "input[0]", "input[1]", "input[4]"]


def test_input_and_instructions_become_the_chat_the_engine_is_sent():
    parsed = parse_responses({"input": [{"role": "user", "content": [{"type": "input_text", "text": "weather?"}]}],
                              "instructions": "Be brief.", "max_output_tokens": 9, "temperature": 0.5}, 4).chat
    assert [m["role"] for m in parsed.messages] == ["system", "user"]
    assert parsed.messages[0]["content"] == "Be brief." and parsed.messages[1]["content"] == "weather?"
    assert (parsed.sampling.max_tokens, parsed.sampling.temperature) == (9, 0.5)
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    formatted = parse_responses({"input": "x", "text": {"format": {"type": "json_schema", "name": "c", "schema": schema,
                                                                   "strict": True}}}, 4).chat.sampling
    assert json.loads(formatted.json_schema) == schema


@pytest.mark.parametrize("body, param", [
    ({"input": "hi", "store": "yes"}, "store"), ({"input": "hi", "previous_response_id": 5}, "previous_response_id"),
    ({"input": "hi", "conversation": "conv_1"}, "conversation"), ({"input": []}, "input"),
    ({"input": [{"role": "user", "content": "hi"}, {"role": "wizard", "content": "x"}]}, "input[1].role"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}, "input[0].content[0]"),
    ({"input": [{"type": "file_search_call", "id": "fs_1"}]}, "input[0].type"),
    ({"input": "hi", "max_output_tokens": 0}, "max_output_tokens"), ({"input": "hi", "tools": [{"type": "web_search"}]},
                                                                     "tools[0]"),
    ({"input": "hi", "text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format"),
    ({"input": "hi", "reasoning": {"effort": "low", "budget": 1}}, "reasoning.budget"), ({"input": "hi", "include": ["file_search"]},
                                                                     "include[0]"),
])
def test_what_the_server_cannot_do_is_a_400_naming_the_responses_field(body, param):
    with pytest.raises(APIError) as caught:
        parse_responses(body, 4)
    assert caught.value.status == 400 and caught.value.param == param


def test_create_answers_with_a_message_and_usage(served):
    client, _, engine = served
    reply = client.responses.create(model="fake-model", input="hi", instructions="Be brief.", max_output_tokens=8)
    assert reply.output_text == "Hello, world." and reply.status == "completed" and reply.object == "response"
    assert reply.output[0].type == "message" and reply.output[0].content[0].type == "output_text"
    assert (reply.usage.output_tokens, reply.usage.total_tokens) == (4, reply.usage.input_tokens + 4)
    assert engine.seen_options[-1].max_new_tokens == 8 and reply.instructions == "Be brief."
    cut = client.responses.create(model="fake-model", input="hi", max_output_tokens=2)
    assert (cut.status, cut.incomplete_details.reason, cut.output_text) == ("incomplete", "max_output_tokens", "Hello,")


def test_stream_sends_the_responses_events_in_order(served):
    client, _, _ = served
    with client.responses.stream(model="fake-model", input=[{"role": "user", "content": "hi"}]) as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert [e.type for e in events] == EVENT_ORDER
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Hello, world."
    assert final.output_text == "Hello, world." and final.usage.output_tokens == 4
    added = next(e for e in events if e.type == "response.output_item.added")
    assert added.item.id == final.output[0].id and added.item.status == "in_progress"


def test_logprobs_come_with_the_include(served):
    client, _, _ = served
    reply = client.responses.create(model="fake-model", input="hi", include=["message.output_text.logprobs"],
                                    top_logprobs=1)
    content = reply.output[0].content[0].logprobs
    assert [(t.token, t.logprob) for t in content] == [("Hello", -0.1), (",", -0.2), (" world", -0.3), (".", -0.4)]
    assert all(t.top_logprobs[0].token == t.token for t in content)
    with client.responses.stream(model="fake-model", input="hi", include=["message.output_text.logprobs"]) as stream:
        deltas = [e for e in stream if e.type == "response.output_text.delta"]
    assert [lp.logprob for e in deltas for lp in e.logprobs] == [-0.1, -0.2, -0.3, -0.4]
    with pytest.raises(openai.BadRequestError) as bad:
        client.responses.create(model="fake-model", input="hi", top_logprobs=3)
    assert bad.value.body["param"] == "top_logprobs"


def test_errors_reach_the_client_in_the_openai_shape(served):
    client, url, _ = served
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="gpt-4o", input="hi")
    with pytest.raises(openai.BadRequestError) as bad:
        client.responses.create(model="fake-model", input="hi", conversation="conv_1")
    assert bad.value.body["param"] == "conversation" and "previous_response_id" in bad.value.message
    status, body, _ = request(url, "POST", "/v1/responses", {"input": "hi", "temperature": "hot"})
    assert status == 400 and body["error"]["param"] == "temperature"


WEATHER = {"type": "function", "name": "get_weather", "description": "Current weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def test_a_function_tool_is_offered_and_its_call_comes_back_as_a_function_call_item(served):
    client, _, engine = served
    reply = client.responses.create(model="fake-model", input="Weather in Paris?", tools=[WEATHER])
    assert [item.type for item in reply.output] == ["function_call"] and reply.status == "completed"
    call = reply.output[0]
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Paris"})
    assert call.call_id.startswith("call_") and call.id.startswith("fc_")
    assert [t.name for t in engine.seen_options[-1].tools] == ["get_weather"]
    # The result goes back as a function_call_output item, with the call: the chat the engine is sent.
    client.responses.create(model="fake-model", tools=[WEATHER], tool_choice="none", input=[
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "18 C, sunny"}])
    assert engine.seen_options[-1].tool_choice == "none"


def test_a_streamed_call_arrives_as_argument_deltas_the_client_rebuilds(served):
    client, _, _ = served
    with client.responses.stream(model="fake-model", input="Weather in Paris?", tools=[WEATHER],
                                 tool_choice={"type": "function", "name": "get_weather"}) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert kinds[-3:] == ["response.function_call_arguments.done", "response.output_item.done", "response.completed"]
    assert "response.output_text.delta" not in kinds and kinds.count("response.function_call_arguments.delta") >= 2
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert json.loads(done.arguments) == {"city": "Paris"}
    assert [(i.type, i.name, json.loads(i.arguments)) for i in final.output] == [("function_call", "get_weather",
                                                                                 {"city": "Paris"})]


def test_a_call_that_answers_nothing_or_an_unknown_tool_is_a_400_naming_the_input(served):
    client, _, _ = served
    with pytest.raises(openai.BadRequestError) as orphan:
        client.responses.create(model="fake-model", tools=[WEATHER], input=[
            {"role": "user", "content": "hi"}, {"type": "function_call_output", "call_id": "call_x", "output": "1"}])
    assert orphan.value.body["param"].startswith("input")
    with pytest.raises(openai.BadRequestError) as unknown:
        client.responses.create(model="fake-model", input="hi", tools=[WEATHER],
                                tool_choice={"type": "function", "name": "get_time"})
    assert unknown.value.body["param"] == "tool_choice"
