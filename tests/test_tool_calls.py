"""Function calling's data (no model): tools from OpenAI's dicts, tool_choice, and chat histories
that carry calls and their results."""

import json

import pytest

from ovchat.engine import GenerationOptions, GenerationResult, Metrics, OptionsError, PromptError, Tool, ToolCall
from ovchat.engine.prompt import check_messages

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time"}}


def test_a_tool_is_built_from_openais_function_definition():
    tool = Tool.from_openai(WEATHER)
    assert (tool.name, tool.description) == ("get_weather", "Current weather in a city")
    assert tool.parameters["required"] == ["city"]
    assert tool.to_openai() == WEATHER


def test_a_tool_without_parameters_takes_no_arguments():
    assert Tool.from_openai(TIME).parameters == {"type": "object", "properties": {}}


@pytest.mark.parametrize("spec", [{"type": "function", "function": {"name": "has space"}},
                                  {"type": "function", "function": {"description": "no name"}},
                                  {"type": "retrieval"}, "get_weather",
                                  {"type": "function", "function": {"name": "f", "parameters": "not a schema"}}])
def test_malformed_tools_are_refused(spec):
    with pytest.raises(OptionsError):
        GenerationOptions(tools=[spec])


def test_options_take_tools_as_dicts_and_keep_them_as_tool_objects():
    options = GenerationOptions(tools=[WEATHER, TIME], tool_choice="get_time")
    assert [t.name for t in options.tools] == ["get_weather", "get_time"]
    assert all(isinstance(t, Tool) for t in options.tools)
    assert options.offers_tools


def test_tool_choice_none_offers_no_tools():
    assert not GenerationOptions(tools=[WEATHER], tool_choice="none").offers_tools
    assert not GenerationOptions().offers_tools


def test_openais_named_tool_choice_becomes_the_name():
    options = GenerationOptions(tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "get_weather"}})
    assert options.tool_choice == "get_weather"


@pytest.mark.parametrize("kwargs, says", [
    ({"tools": [WEATHER], "tool_choice": "get_stock_price"}, "not among the tools offered"),
    ({"tool_choice": "required"}, "needs at least one tool"),
    ({"tools": [WEATHER, WEATHER]}, "share the name"),
    ({"tools": [WEATHER], "tool_format": "xml"}, "tool_format"),
    ({"tools": [WEATHER], "json_object": True}, "cannot be combined"),
])
def test_inconsistent_tool_options_are_refused_with_a_reason(kwargs, says):
    with pytest.raises(OptionsError, match=says):
        GenerationOptions(**kwargs)


def test_a_tool_call_speaks_openais_wire_form_and_the_templates_form():
    call = ToolCall("call_1", "get_weather", {"city": "Paris"})
    wire = call.to_openai()
    assert wire["function"]["arguments"] == '{"city": "Paris"}'
    assert ToolCall.from_openai(wire) == call
    assert call.to_template()["function"]["arguments"] == {"city": "Paris"}


def test_a_result_has_no_tool_calls_unless_the_model_made_some():
    metrics = Metrics(0, 0, 0, 0)
    assert GenerationResult("hi", 1, 1, "stop", metrics).tool_calls == ()
    call = ToolCall("call_1", "get_time", {})
    assert GenerationResult("", 1, 5, "tool_calls", metrics, tool_calls=(call,)).to_dict()["tool_calls"][0]["name"] == "get_time"


def _history(arguments='{"city": "Paris"}', call_id="call_1"):
    return [{"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}]},
            {"role": "tool", "tool_call_id": call_id, "content": "18 C, sunny"}]


def test_a_history_with_a_call_and_its_result_is_normalised_for_the_template():
    checked = check_messages(_history())
    assert checked[1]["content"] == ""
    assert checked[1]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}  # templates read an object
    assert checked[2] == {"role": "tool", "tool_call_id": "call_1", "content": "18 C, sunny"}


def test_tool_call_objects_are_accepted_in_a_history():
    history = _history()
    history[1]["tool_calls"] = [ToolCall("call_1", "get_weather", {"city": "Paris"})]
    assert check_messages(history)[1]["tool_calls"][0]["id"] == "call_1"


@pytest.mark.parametrize("history, says", [
    (_history(call_id="call_9"), "answers no tool call"),
    (_history(arguments='{"city": "Par'), "not valid JSON"),
    (_history(arguments='["Paris"]'), "must be a JSON object"),
    ([{"role": "tool", "tool_call_id": "call_1", "content": "18 C"}], "answers no tool call"),
    ([{"role": "user", "content": "hi", "tool_calls": []}], "only assistant messages"),
])
def test_inconsistent_tool_histories_are_refused_naming_the_message(history, says):
    with pytest.raises(PromptError, match=says):
        check_messages(history)


def test_a_tool_result_may_end_a_history_even_when_empty():
    history = _history()
    history[-1]["content"] = ""
    assert check_messages(history)[-1]["content"] == ""


def test_options_with_tools_survive_pickling_for_the_engine_process():
    import pickle

    options = GenerationOptions(tools=[WEATHER], tool_choice="required")
    assert pickle.loads(pickle.dumps(options)) == options
    call = ToolCall("c", "get_weather", {"city": "Paris"})
    assert json.loads(call.to_openai()["function"]["arguments"]) == pickle.loads(pickle.dumps(call)).arguments
