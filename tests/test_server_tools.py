"""Tool calling through `ovchat serve` on the real default model, with the clients agents use:
the openai SDK's tool loop (streamed and not, its stream accumulator), langchain-openai's
bind_tools with a ToolMessage round trip, instructor in TOOLS mode; and bad tool input refused
with a 400 that names the field. Greedy decoding, short answers; the model loads once."""

import json

import jsonschema
import pytest

from server_harness import request, running_server

openai = pytest.importorskip("openai")
pytest.importorskip("uvicorn")
pytestmark = pytest.mark.default_model  # every call below is bounded by its client's timeout

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40}},
                   "required": ["city"], "additionalProperties": False}}}
CALCULATE = {"type": "function", "function": {
    "name": "calculate", "description": "Evaluate an arithmetic expression.",
    "parameters": {"type": "object", "properties": {"expression": {"type": "string", "maxLength": 40}},
                   "required": ["expression"], "additionalProperties": False}}}
ASK = [{"role": "user", "content": "What's the weather like in Paris right now?"}]


def get_weather(city: str) -> str:
    return f"It is 18 degrees Celsius and sunny in {city}."


@pytest.fixture(scope="module")
def served(default_model_dir):
    from ovchat.engine import BatchOptions, Engine

    with running_server(lambda: Engine.load(default_model_dir, batching=BatchOptions(max_sequences=4)),
                        max_concurrency=4, max_queue=8) as (url, app):
        yield url, request(url, "GET", "/v1/models")[1]["data"][0]["id"]


@pytest.fixture(scope="module")
def client(served):
    return openai.OpenAI(base_url=served[0] + "/v1", api_key="unused", max_retries=0, timeout=120)


def _calls(message):
    return [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or []]


# -- the openai SDK --------------------------------------------------------------------------------

@pytest.mark.parametrize("tool_choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
def test_a_forced_call_comes_back_as_tool_calls_with_valid_arguments(served, client, tool_choice):
    reply = client.chat.completions.create(model=served[1], messages=ASK, tools=[WEATHER, CALCULATE],
                                           tool_choice=tool_choice, parallel_tool_calls=False, max_tokens=64)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    arguments = json.loads(call.function.arguments)
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in (WEATHER, CALCULATE)}
    jsonschema.validate(arguments, schemas[call.function.name])  # the grammar held: it names a tool, its schema holds
    if isinstance(tool_choice, dict):
        assert call.function.name == "get_weather" and isinstance(arguments["city"], str)


def test_the_sdks_stream_accumulator_rebuilds_the_same_calls_as_without_streaming(served, client):
    kwargs = dict(model=served[1], messages=ASK, tools=[WEATHER, CALCULATE], tool_choice="required",
                  parallel_tool_calls=False, max_tokens=96)
    whole = client.chat.completions.create(**kwargs).choices[0]
    with client.chat.completions.stream(**kwargs) as stream:
        chunks = [event for event in stream if event.type == "chunk"]
        streamed = stream.get_final_completion().choices[0]
    assert _calls(streamed.message) == _calls(whole.message) and _calls(whole.message)
    assert streamed.finish_reason == whole.finish_reason
    deltas = [tc for e in chunks for c in e.chunk.choices for tc in (c.delta.tool_calls or [])]
    firsts = [d for d in deltas if d.id]
    assert [d.index for d in firsts] == list(range(len(whole.message.tool_calls)))  # per call: index, id, name first
    assert all(d.function.name for d in firsts)
    assert len(deltas) > len(firsts)  # then the arguments, in fragments


@pytest.mark.parametrize("stream", [False, True])
def test_the_openai_tool_loop_a_call_its_result_then_a_text_answer(served, client, stream):
    messages = list(ASK)
    first = _complete(client, stream, model=served[1], messages=messages, tools=[WEATHER],
                      tool_choice={"type": "function", "function": {"name": "get_weather"}}, max_tokens=64)
    assert first.finish_reason == "tool_calls"
    messages.append(first.message.model_dump(exclude_none=True))  # the assistant turn, as the SDK returns it
    for call in first.message.tool_calls:
        messages.append({"role": "tool", "tool_call_id": call.id,
                         "content": get_weather(**json.loads(call.function.arguments))})
    final = _complete(client, stream, model=served[1], messages=messages, tools=[WEATHER], tool_choice="none",
                      max_tokens=48)
    assert final.finish_reason in ("stop", "length") and not final.message.tool_calls
    assert final.message.content.strip()


def _complete(client, stream: bool, **kwargs):
    if not stream:
        return client.chat.completions.create(**kwargs).choices[0]
    with client.chat.completions.stream(**kwargs) as events:
        return events.get_final_completion().choices[0]


# -- langchain, instructor -------------------------------------------------------------------------

def test_langchain_bind_tools_with_a_tool_message_round_trip(served):
    langchain_openai = pytest.importorskip("langchain_openai")
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool

    @tool
    def weather(city: str) -> str:
        """Get the current weather in a city."""
        return get_weather(city)

    llm = langchain_openai.ChatOpenAI(base_url=served[0] + "/v1", api_key="unused", model=served[1], temperature=0,
                                      max_tokens=64, max_retries=0, timeout=120)
    bound = llm.bind_tools([weather], tool_choice="weather")
    history = [HumanMessage("What's the weather like in Paris right now?")]
    asked = bound.invoke(history)
    (call,) = asked.tool_calls
    assert call["name"] == "weather" and isinstance(call["args"]["city"], str) and call["id"]
    streamed = None
    for chunk in bound.stream(history):  # langchain rebuilds the same call from the streamed deltas
        streamed = chunk if streamed is None else streamed + chunk
    assert [(c["name"], c["args"]) for c in streamed.tool_calls] == [(call["name"], call["args"])]
    history += [asked, ToolMessage(weather.invoke(call["args"]), tool_call_id=call["id"])]
    answer = llm.bind_tools([weather], tool_choice="none").invoke(history)
    assert not answer.tool_calls and answer.content.strip()


def test_instructor_in_tools_mode_returns_a_pydantic_model(served, client):
    instructor = pytest.importorskip("instructor")
    from pydantic import BaseModel, Field

    class City(BaseModel):
        name: str = Field(max_length=40)
        country: str = Field(max_length=40)

    patched = instructor.from_openai(client, mode=instructor.Mode.TOOLS)
    city = patched.chat.completions.create(model=served[1], response_model=City, max_retries=0, max_tokens=96,
                                           messages=[{"role": "user", "content": "Paris is the capital of France. "
                                                      "Extract the city and its country."}])
    assert isinstance(city, City) and city.name and city.country


# -- bad input -------------------------------------------------------------------------------------

def _refused(served, body):
    status, answer, _ = request(served[0], "POST", "/v1/chat/completions",
                                {"model": served[1], "max_tokens": 8, **body}, timeout_s=60)
    assert status == 400, answer
    return answer["error"]


def _history(**call):
    function = {"name": "get_weather", "arguments": '{"city": "Paris"}', **call}
    return [*ASK, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": function}]}]


@pytest.mark.parametrize("body, param", [
    ({"messages": ASK, "tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"x": {"type": "no-such-type"}}}}}], "tool_choice": "required"},
     "tools[0].function.parameters"),
    ({"messages": ASK, "tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "get_time"}}},
     "tool_choice"),
    ({"messages": ASK, "tool_choice": "required"}, "tool_choice"),
    ({"messages": [*_history(), {"role": "tool", "tool_call_id": "call_9", "content": "18 C"}], "tools": [WEATHER]},
     "messages[2].tool_call_id"),
    ({"messages": [*ASK, {"role": "tool", "content": "18 C"}], "tools": [WEATHER]}, "messages[1].tool_call_id"),
    ({"messages": [*_history(arguments='{"city": "Par'), {"role": "tool", "tool_call_id": "call_1", "content": "18 C"}],
      "tools": [WEATHER]}, "messages[1].tool_calls[0].function.arguments"),
    ({"messages": ASK, "tools": [{"type": "retrieval"}]}, "tools[0]"),
    ({"messages": ASK, "tools": [WEATHER, WEATHER]}, "tools[1].function.name"),
    ({"messages": ASK, "tools": [{"type": "function", "function": {**WEATHER["function"], "returns": {}}}]},
     "tools[0].function.returns"),
])
def test_bad_tool_input_is_a_400_naming_the_field(served, body, param):
    error = _refused(served, body)
    assert error["param"] == param, error


def test_the_server_still_answers_after_a_schema_that_cannot_compile(served, client):
    test_bad_tool_input_is_a_400_naming_the_field(served, {"messages": ASK, "tools": [{"type": "function", "function": {
        "name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "no-such-type"}}}}}]},
        "tools[0].function.parameters")
    reply = client.chat.completions.create(model=served[1], messages=ASK, tools=[WEATHER], tool_choice="required",
                                           parallel_tool_calls=False, max_tokens=64)
    assert reply.choices[0].finish_reason == "tool_calls"
