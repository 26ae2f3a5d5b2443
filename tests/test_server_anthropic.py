"""The Anthropic Messages API (/v1/messages, /v1/messages/count_tokens) with a fake engine (no
model, seconds), through the official anthropic client: the request rewritten as a chat request,
the Message and its event stream, tool_use blocks, the key in x-api-key, and errors in
Anthropic's shape with the OpenAI routes' status codes."""

import json
import threading

import pytest

from server_harness import FakeEngine, request, running_server
from ovchat.server.anthropic_request import parse_messages
from ovchat.server.protocol import APIError

anthropic = pytest.importorskip("anthropic")
pytest.importorskip("uvicorn")
pytestmark = pytest.mark.timeout(120)

HI = [{"role": "user", "content": "hi"}]
WEATHER = {"name": "get_weather", "description": "Get the weather in a city.",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
EVENT_ORDER = ["message_start", "ping", "content_block_start", *["content_block_delta"] * 4, "content_block_stop",
               "message_delta", "message_stop"]


@pytest.fixture(scope="module")
def served():
    engine = FakeEngine()
    with running_server(lambda: engine) as (url, _):
        yield anthropic.Anthropic(base_url=url, api_key="unused", max_retries=0, timeout=30), url, engine


def _events(url: str, body: dict) -> list[tuple[str, dict]]:
    status, text, headers = request(url, "POST", "/v1/messages", {**body, "stream": True})
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = []
    for block in text.strip().split("\n\n"):
        kind, data = block.split("\n")
        events.append((kind.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    assert all(kind == data["type"] for kind, data in events)
    return events


def test_a_tool_loop_in_anthropic_blocks_becomes_the_chat_the_engine_is_sent():
    body = {"max_tokens": 10, "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            "tools": [WEATHER], "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": [{"type": "text", "text": "Checking."},
                                                  {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                                   "input": {"city": "Paris"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 C"},
                                             {"type": "text", "text": "And so?"}]}]}
    chat = parse_messages(body, 1).chat
    assert chat.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18 C"},
        {"role": "user", "content": "And so?"}]
    sampling = chat.sampling
    assert sampling.max_tokens == 10 and sampling.tool_choice == "get_weather" and not sampling.parallel_tool_calls
    assert [t.name for t in sampling.tools] == ["get_weather"] and sampling.tools[0].parameters == WEATHER["input_schema"]


def test_the_fields_claude_code_sends_are_accepted(served):
    # The shape of Claude Code 2.1's first request (its prompt and 24 tools cut down to one of each).
    body = {"model": "fake-model", "max_tokens": 32000, "stream": True, "metadata": {"user_id": '{"session_id": "s"}'},
            "system": [{"type": "text", "text": "You are a Claude agent."},
                       {"type": "text", "text": "Help with code.", "cache_control": {"type": "ephemeral"}}],
            "tools": [{"name": "Bash", "description": "Run a command.", "input_schema": {
                "type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "<system-reminder>...</system-reminder>"},
                                                      {"type": "text", "text": "Say hello.",
                                                       "cache_control": {"type": "ephemeral"}}]},
                         {"role": "system", "content": "Available agent types: ..."}],
            "thinking": {"type": "adaptive"}, "output_config": {"effort": "high"},
            "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]}}
    chat = parse_messages(body, 1).chat
    assert [m["role"] for m in chat.messages] == ["system", "user", "system"]
    assert chat.messages[0]["content"] == "You are a Claude agent.\nHelp with code."
    assert chat.messages[1]["content"] == "<system-reminder>...</system-reminder>\nSay hello."
    kinds = [kind for kind, _ in _events(served[1], body)]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"


@pytest.mark.parametrize("choice, expected", [({"type": "auto"}, "auto"), ({"type": "any"}, "required"),
                                              ({"type": "none"}, "none"), ({"type": "tool", "name": "get_weather"},
                                                                           "get_weather")])
def test_tool_choice_maps_onto_the_guided_tool_calls(choice, expected):
    body = {"max_tokens": 5, "messages": HI, "tools": [WEATHER], "tool_choice": choice}
    assert parse_messages(body, 1).chat.sampling.tool_choice == expected


def test_create_answers_with_a_message_its_usage_and_stop_reason(served):
    client, _, _ = served
    message = client.messages.create(model="fake-model", max_tokens=16, messages=HI)
    assert message.id.startswith("msg_") and message.type == "message" and message.role == "assistant"
    assert [(b.type, b.text) for b in message.content] == [("text", "Hello, world.")]
    assert message.stop_reason == "end_turn" and message.model == "fake-model"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (len(json.dumps(HI).split()), 4)
    cut = client.messages.create(model="fake-model", max_tokens=2, messages=HI)
    assert cut.stop_reason == "max_tokens" and cut.content[0].text == "Hello," and cut.usage.output_tokens == 2


def test_stream_sends_anthropics_events_in_order_and_the_sdk_rebuilds_the_message(served):
    client, url, _ = served
    events = _events(url, {"max_tokens": 16, "messages": HI})
    assert [kind for kind, _ in events] == EVENT_ORDER
    assert events[0][1]["message"]["usage"]["input_tokens"] == len(json.dumps(HI).split())
    assert "".join(data["delta"]["text"] for kind, data in events if kind == "content_block_delta") == "Hello, world."
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn" and events[-2][1]["usage"]["output_tokens"] == 4
    with client.messages.stream(model="fake-model", max_tokens=16, messages=HI) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert pieces == ["Hello", ",", " world", "."]
    assert final.content[0].text == "Hello, world." and final.stop_reason == "end_turn"


def test_a_call_comes_back_as_a_tool_use_block_whole_or_streamed(served):
    client, url, engine = served
    kwargs = dict(model="fake-model", max_tokens=64, messages=HI, tools=[WEATHER], tool_choice={"type": "any"})
    message = client.messages.create(**kwargs)
    assert engine.seen_options[-1].tool_choice == "required"
    (block,) = message.content
    assert (block.type, block.name, block.input) == ("tool_use", "get_weather", {"city": "Paris"})
    assert message.stop_reason == "tool_use"
    with client.messages.stream(**kwargs) as stream:
        final = stream.get_final_message()
    assert [(b.type, b.name, b.input) for b in final.content] == [("tool_use", "get_weather", {"city": "Paris"})]
    assert final.stop_reason == "tool_use"
    events = _events(url, {k: v for k, v in kwargs.items() if k != "model"})
    start = next(data for kind, data in events if kind == "content_block_start")
    assert start["content_block"] == {"type": "tool_use", "id": start["content_block"]["id"], "name": "get_weather",
                                      "input": {}}
    partial = [data["delta"]["partial_json"] for kind, data in events if kind == "content_block_delta"]
    assert len(partial) > 1 and json.loads("".join(partial)) == {"city": "Paris"}


def test_count_tokens_counts_the_prompt_the_engine_would_be_fed(served):
    client, _, _ = served
    counted = client.messages.count_tokens(model="fake-model", messages=HI)
    answered = client.messages.create(model="fake-model", max_tokens=4, messages=HI)
    assert counted.input_tokens == answered.usage.input_tokens > 0
    _, url, _ = served
    status, reply, _ = request(url, "POST", "/v1/messages/count_tokens", {"max_tokens": 4, "messages": HI})
    assert status == 400 and "max_tokens" in reply["error"]["message"]


@pytest.mark.parametrize("body, field", [
    ({"messages": HI}, "max_tokens"),
    ({"max_tokens": 0, "messages": HI}, "max_tokens"),
    ({"max_tokens": 8, "messages": []}, "messages"),
    ({"max_tokens": 8, "messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
    ({"max_tokens": 8, "messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]},
     "messages[0].content[0]"),
    ({"max_tokens": 8, "messages": [{"role": "user", "content": [{"type": "text", "text": 3}]}]},
     "messages[0].content[0].text"),
    ({"max_tokens": 8, "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": [
        {"type": "tool_use", "id": "t1", "name": "get_weather", "input": "Paris"}]}]}, "messages[1].content[0].input"),
    ({"max_tokens": 8, "messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "nope", "content": "18 C"}]}]}, "messages[0].content[0]"),
    ({"max_tokens": 8, "messages": [*HI, {"role": "assistant", "content": "The answer is"}]}, "messages[1]"),
    ({"max_tokens": 8, "messages": HI, "system": 5}, "system"),
    ({"max_tokens": 8, "messages": HI, "temperature": "hot"}, "temperature"),
    ({"max_tokens": 8, "messages": HI, "top_k": -5}, "top_k"),
    ({"max_tokens": 8, "messages": HI, "stop_sequences": "END"}, "stop_sequences"),
    ({"max_tokens": 8, "messages": HI, "stop_sequences": [""]}, "stop_sequences"),
    ({"max_tokens": 8, "messages": HI, "tools": [{"name": "f"}]}, "tools[0].input_schema"),
    ({"max_tokens": 8, "messages": HI, "tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0]"),
    ({"max_tokens": 8, "messages": HI, "tools": [WEATHER], "tool_choice": {"type": "tool", "name": "nope"}},
     "tool_choice"),
    ({"max_tokens": 8, "messages": HI, "tool_choice": {"type": "any"}}, "tool_choice"),
    ({"max_tokens": 8, "messages": HI, "thinking": {"type": "enabled", "budget_tokens": 0}}, "thinking.budget_tokens"),
    ({"max_tokens": 8, "messages": HI, "thinking": {"type": "sometimes"}}, "thinking"),
    ({"max_tokens": 8, "messages": HI, "output_config": {"effort": "extreme"}}, "output_config.effort"),
    ({"max_tokens": 8, "messages": HI, "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]}},
     "context_management.edits[0]"),
    ({"max_tokens": 8, "messages": HI, "metadata": {"user_id": 7}}, "metadata.user_id"),
    ({"max_tokens": 8, "messages": HI, "container": "c1"}, "container"),
    ({"max_tokens": 8, "messages": HI, "frobnicate": True}, "frobnicate"),
])
def test_bad_input_is_a_400_in_anthropics_shape_naming_the_field(served, body, field):
    _, url, _ = served
    counted = {k: v for k, v in body.items() if k != "max_tokens"}  # count_tokens takes no max_tokens
    for path, sent in (("/v1/messages", body), ("/v1/messages/count_tokens", counted)):
        if sent is counted and field == "max_tokens":
            continue
        status, reply, _ = request(url, "POST", path, sent)
        assert status == 400, reply
        assert reply["type"] == "error" and reply["error"]["type"] == "invalid_request_error"
        assert field in reply["error"]["message"], reply


def test_the_sdk_raises_its_own_error_types(served):
    client, _, _ = served
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(model="fake-model", max_tokens=8, messages=HI, extra_body={"top_p": 3})
    assert bad.value.body["error"]["type"] == "invalid_request_error" and "top_p" in bad.value.message
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="claude-opus-4", max_tokens=8, messages=HI)
    assert "fake-model" in missing.value.message
    for thinking in ({"type": "disabled"}, {"type": "adaptive"}):  # adaptive: a model that cannot think does not
        message = client.messages.create(model="fake-model", max_tokens=8, messages=HI, thinking=thinking)
        assert message.stop_reason == "end_turn"


def test_the_key_is_taken_from_x_api_key_or_a_bearer_token():
    with running_server(lambda: FakeEngine(), api_key="sesame") as (url, _):
        keyed = anthropic.Anthropic(base_url=url, api_key="sesame", max_retries=0, timeout=30)
        assert keyed.messages.create(model="fake-model", max_tokens=4, messages=HI).content
        bearer = anthropic.Anthropic(base_url=url, auth_token="sesame", max_retries=0, timeout=30)
        assert bearer.messages.count_tokens(model="fake-model", messages=HI).input_tokens > 0
        with pytest.raises(anthropic.AuthenticationError) as wrong:
            anthropic.Anthropic(base_url=url, api_key="guess", max_retries=0, timeout=30).messages.create(
                model="fake-model", max_tokens=4, messages=HI)
        assert wrong.value.status_code == 401 and wrong.value.body["error"]["type"] == "authentication_error"
        # The OpenAI routes take the Anthropic header too; without any key, both refuse in their own shape.
        assert request(url, "GET", "/v1/models", headers={"x-api-key": "sesame"})[0] == 200
        status, reply, _ = request(url, "GET", "/v1/models")
        assert status == 401 and reply["error"]["type"] == "authentication_error" and "type" not in reply


def test_errors_before_the_route_leave_in_anthropics_shape_too():
    loaded = threading.Event()

    def load():
        loaded.wait(30)
        return FakeEngine()
    with running_server(load, wait_ready=False) as (url, _):
        status, reply, headers = request(url, "POST", "/v1/messages", {"max_tokens": 4, "messages": HI})
        assert status == 503 and reply["error"]["type"] == "overloaded_error" and headers["Retry-After"]
        status, reply, _ = request(url, "POST", "/v1/messages", b"{}", headers={"Content-Type": "text/plain"})
        assert status == 415 and reply == {"type": "error", "error": {"type": "invalid_request_error",
                                                                      "message": reply["error"]["message"]}}
        status, reply, _ = request(url, "POST", "/v1/messages/batches", {})
        assert status == 404 and reply["error"]["type"] == "not_found_error"
        loaded.set()
