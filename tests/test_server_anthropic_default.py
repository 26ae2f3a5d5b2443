"""The Anthropic Messages API on the real default model (batching mode), through the official
anthropic client: messages.create and messages.stream give the same greedy answer, a tool loop
(a forced tool_use, its tool_result, then a text answer), count_tokens against the usage the
answer reports. Answers are kept short; the model loads once."""

import pytest

from server_harness import request, running_server

anthropic = pytest.importorskip("anthropic")
jsonschema = pytest.importorskip("jsonschema")
pytest.importorskip("uvicorn")
pytestmark = pytest.mark.default_model  # every call below is bounded by its client's timeout

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
# anthropic 2.17 sends no sampling fields; older SDKs and other clients do, and greedy makes answers comparable.
GREEDY = {"extra_body": {"temperature": 0}}
WEATHER = {"name": "get_weather", "description": "Get the current weather in a city.",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40}},
                            "required": ["city"], "additionalProperties": False}}
CALCULATE = {"name": "calculate", "description": "Evaluate an arithmetic expression.",
             "input_schema": {"type": "object", "properties": {"expression": {"type": "string", "maxLength": 40}},
                              "required": ["expression"], "additionalProperties": False}}
ASK = [{"role": "user", "content": "What's the weather like in Paris right now?"}]


@pytest.fixture(scope="module")
def served(default_model_dir):
    from ovchat.engine import BatchOptions, Engine

    with running_server(lambda: Engine.load(default_model_dir, batching=BatchOptions(max_sequences=4)),
                        max_concurrency=4, max_queue=8, api_key="sesame") as (url, _):
        model = request(url, "GET", "/v1/models", headers={"x-api-key": "sesame"})[1]["data"][0]["id"]
        yield anthropic.Anthropic(base_url=url, api_key="sesame", max_retries=0, timeout=120), model


def test_create_and_stream_give_the_same_greedy_answer(served):
    client, model = served
    whole = client.messages.create(model=model, max_tokens=24, messages=FRANCE, system="Answer in one sentence.",
                                   **GREEDY)
    assert whole.stop_reason in ("end_turn", "max_tokens") and "Paris" in whole.content[0].text
    with client.messages.stream(model=model, max_tokens=24, messages=FRANCE, system="Answer in one sentence.",
                                **GREEDY) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == final.content[0].text == whole.content[0].text
    assert (final.usage.input_tokens, final.usage.output_tokens, final.stop_reason) == \
        (whole.usage.input_tokens, whole.usage.output_tokens, whole.stop_reason)
    cut = client.messages.create(model=model, max_tokens=3, messages=FRANCE, **GREEDY)
    assert cut.stop_reason == "max_tokens" and cut.usage.output_tokens == 3


@pytest.mark.parametrize("choice", [{"type": "any"}, {"type": "tool", "name": "get_weather"}])
def test_a_forced_tool_choice_gives_a_tool_use_block_whose_input_fits_its_schema(served, choice):
    client, model = served
    message = client.messages.create(model=model, max_tokens=64, messages=ASK, tools=[WEATHER, CALCULATE],
                                     tool_choice={**choice, "disable_parallel_tool_use": True})
    assert message.stop_reason == "tool_use"
    (block,) = [b for b in message.content if b.type == "tool_use"]
    schemas = {t["name"]: t["input_schema"] for t in (WEATHER, CALCULATE)}
    jsonschema.validate(block.input, schemas[block.name])
    if choice["type"] == "tool":
        assert block.name == "get_weather"


@pytest.mark.parametrize("stream", [False, True])
def test_the_tool_loop_a_tool_use_its_result_then_a_text_answer(served, stream):
    client, model = served
    messages = list(ASK)
    first = _create(client, stream, model=model, max_tokens=64, messages=messages, tools=[WEATHER],
                    tool_choice={"type": "tool", "name": "get_weather"})
    assert first.stop_reason == "tool_use"
    messages.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]})
    messages.append({"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": b.id, "content": f"It is 18 degrees Celsius and sunny in {b.input['city']}."}
        for b in first.content if b.type == "tool_use"]})
    final = _create(client, stream, model=model, max_tokens=48, messages=messages, tools=[WEATHER],
                    tool_choice={"type": "none"})
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert [b.type for b in final.content] == ["text"] and final.content[0].text.strip()


def _create(client, stream: bool, **kwargs):
    if not stream:
        return client.messages.create(**kwargs)
    with client.messages.stream(**kwargs) as events:
        return events.get_final_message()


def test_count_tokens_is_the_input_the_answer_reports(served):
    client, model = served
    kwargs = dict(model=model, messages=ASK, tools=[WEATHER], system="You check the weather.")
    counted = client.messages.count_tokens(**kwargs).input_tokens
    answered = client.messages.create(max_tokens=4, **kwargs).usage.input_tokens
    assert counted == answered
    assert client.messages.count_tokens(model=model, messages=ASK).input_tokens < counted  # the tools take tokens
