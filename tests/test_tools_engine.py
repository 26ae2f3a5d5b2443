"""Tools in the engine on the default model, in both modes and in a child process: a forced call
parses and names the tool, a chat carries the call and its result to a text answer, the prompt
the pipeline sees is the one counted, and a schema that cannot compile is refused by name before
anything runs (the engine answers afterwards)."""

import pytest

from ovchat.engine import EngineProcess, GenerationOptions, OptionsError, PromptError

pytestmark = pytest.mark.default_model

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40}}, "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "description": "The time in a time zone.",
        "parameters": {"type": "object", "properties": {"timezone": {"type": "string", "maxLength": 40}},
                       "required": ["timezone"]}}}
NAMED = GenerationOptions(max_new_tokens=64, tools=[WEATHER, TIME], tool_choice="get_weather")


@pytest.fixture(scope="module", params=["single", "batch"])
def engine(request, default_model_dir):
    from ovchat.engine import Engine

    engine = Engine.load(default_model_dir, batching=request.param == "batch")
    yield engine
    engine.close()


def test_a_named_tool_is_called_and_parsed(engine):
    result = engine.generate("What's the weather like in Paris?", NAMED)
    assert result.finish_reason == "tool_calls"
    (call,) = result.tool_calls
    assert call.name == "get_weather" and isinstance(call.arguments["city"], str) and call.id.startswith("call_")
    assert result.text == ""


def test_required_calls_an_offered_tool_and_auto_may_answer_in_text(engine):
    required = engine.generate("What time is it in Tokyo?", GenerationOptions(
        max_new_tokens=64, tools=[WEATHER, TIME], tool_choice="required", parallel_tool_calls=False))
    assert [c.name in ("get_weather", "get_time") for c in required.tool_calls] == [True]
    auto = engine.generate("Say hello.", GenerationOptions(max_new_tokens=24, tools=[WEATHER, TIME]))
    assert auto.finish_reason in ("stop", "length", "tool_calls")  # the model's choice; it always parses
    assert all(c.name in ("get_weather", "get_time") for c in auto.tool_calls)


def test_a_chat_carries_the_call_and_its_result_to_a_text_answer(engine):
    chat = engine.chat("You are a helpful assistant.", NAMED)
    asked = chat.send("What's the weather like in Paris?")
    (call,) = asked.tool_calls
    with pytest.raises(PromptError):
        chat.add_tool_result("call_unknown", "18 C")
    chat.add_tool_result(call.id, "18 degrees Celsius and sunny")
    answer = chat.send(options=GenerationOptions(max_new_tokens=32, tools=[WEATHER, TIME], tool_choice="none"))
    assert answer.text.strip() and not answer.tool_calls
    roles = [m["role"] for m in chat.messages]
    assert roles == ["system", "user", "assistant", "tool", "assistant"]
    assert chat.messages[2]["tool_calls"][0]["function"]["name"] == "get_weather"


CONVERT = {"type": "function", "function": {
    "name": "convert_units", "description": "Convert a quantity from one unit to another.",
    "parameters": {"type": "object", "properties": {
        "value": {"type": "number"}, "from_unit": {"type": "string", "enum": ["km", "mi", "kg", "lb", "C", "F"]},
        "to_unit": {"type": "string", "enum": ["km", "mi", "kg", "lb", "C", "F"]},
        "digits": {"type": "integer", "minimum": 0, "maximum": 6}, "exact": {"type": "boolean"}},
        "required": ["value", "from_unit", "to_unit"]}}}
PYTHONIC_PROMPTS = ["What's the weather like in Paris?", "Convert 12 km to miles.", "What time is it in Tokyo?",
                    "How many pounds is 70 kg? Round to 1 digit."]


@pytest.mark.parametrize("choice", ["required", "convert_units"])
def test_pythonic_calls_are_constrained_to_an_offered_tool_and_its_schema(engine, choice):
    jsonschema = pytest.importorskip("jsonschema")
    tools = [WEATHER, TIME, CONVERT]
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    options = GenerationOptions(max_new_tokens=96, tools=tools, tool_choice=choice, tool_format="llama3_pythonic")
    for prompt in PYTHONIC_PROMPTS:
        result = engine.generate(prompt, options)
        assert result.finish_reason == "tool_calls" and result.tool_calls, (prompt, result.text)
        for call in result.tool_calls:
            assert choice == "required" or call.name == choice
            jsonschema.validate(call.arguments, schemas[call.name])


def test_the_prompt_with_tools_is_counted_as_the_pipeline_is_fed_it(engine):
    plain = engine.generate("What's the weather like in Paris?", GenerationOptions(max_new_tokens=2))
    with_tools = engine.generate("What's the weather like in Paris?", NAMED)
    assert with_tools.input_tokens > plain.input_tokens + 50  # the fallback's system prompt lists the tools
    messages = [{"role": "user", "content": "What's the weather like in Paris?"}]
    again = engine.generate(messages, NAMED)
    assert again.input_tokens == with_tools.input_tokens
    assert [(c.name, c.arguments) for c in again.tool_calls] == [(c.name, c.arguments) for c in with_tools.tool_calls]


def test_a_schema_that_cannot_compile_is_refused_by_name_and_the_engine_goes_on(engine):
    broken = {"type": "function", "function": {"name": "broken", "parameters": {
        "type": "object", "properties": {"x": {"type": "no-such-type"}}}}}
    with pytest.raises(OptionsError, match=r"broken.*tools\[1\]") as caught:
        engine.generate("hi", GenerationOptions(max_new_tokens=8, tools=[WEATHER, broken], tool_choice="required"))
    assert caught.value.param == "tools[1].parameters"
    assert engine.generate("What's the weather like in Paris?", NAMED).tool_calls


def test_the_engine_process_returns_the_calls_and_the_format(default_model_dir):
    engine = EngineProcess.load(default_model_dir, batching=True)
    try:
        with engine.stream("What's the weather like in Paris?", NAMED) as stream:
            text = "".join(stream)
        # The calls arrive parsed (read once, as the answer streamed), never as markup in the text.
        assert stream.tool_format == "hermes" and "<tool_call>" not in text and text == stream.result.text
        assert [c.name for c in stream.result.tool_calls] == ["get_weather"]
        assert [d.name for d in stream.tool_calls if d.name] == ["get_weather"]
        assert stream.tool_calls[0].id == stream.result.tool_calls[0].id
        with pytest.raises(OptionsError) as caught:
            engine.generate("hi", GenerationOptions(tools=[WEATHER], tool_choice="get_time"))
        assert "get_time" in str(caught.value)
    finally:
        engine.close()
