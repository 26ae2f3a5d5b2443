"""Tools in a request, no model: which templates get the tools and which get ovchat's fallback
prompt, how a history's calls and results are written for each, the grammar built per
tool_choice, and a result's calls read back."""

import json

import pytest

from ovchat.engine import GenerationOptions, GenerationResult, Metrics, OptionsError
from ovchat.engine.prompt import check_messages
from ovchat.engine.tool_grammar import tool_grammar
from ovchat.engine.tool_parsers import parser_for
from ovchat.engine.events import Accepted
from ovchat.engine.stream import Feed, Handle
from ovchat.engine.tool_use import knows_tools, plan

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n'}}"
          "{% endfor %}")  # SmolLM2's shape: knows no tools
QWEN_LIKE = "{%- if tools %}<tools>{% for tool in tools %}{{ tool | tojson }}{% endfor %}</tools>{% endif %}<tool_call>"


class FakeTokenizer:
    def __init__(self, template):
        self.chat_template = template


def history():
    return check_messages([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris and the time?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "c2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "18 C"},
        {"role": "tool", "tool_call_id": "c2", "content": "14:05"},
    ])


def test_a_template_that_uses_tools_knows_them_and_one_that_does_not_gets_the_fallback():
    assert knows_tools(FakeTokenizer(QWEN_LIKE))
    assert not knows_tools(FakeTokenizer(CHATML))


def test_a_template_that_knows_tools_gets_them_and_the_history_as_it_is():
    prompt = plan(history(), GenerationOptions(tools=[WEATHER, TIME]), FakeTokenizer(QWEN_LIKE))
    assert [t["function"]["name"] for t in prompt.tools] == ["get_weather", "get_time"]
    assert prompt.messages == history()
    assert prompt.tool_format == "hermes" and prompt.grammar


def test_the_fallback_lists_the_tools_in_the_system_prompt_and_shows_the_format():
    prompt = plan(history(), GenerationOptions(tools=[WEATHER, TIME]), FakeTokenizer(CHATML))
    assert prompt.tools is None
    system = prompt.messages[0]
    assert system["role"] == "system" and system["content"].startswith("Be brief.\n\n# Tools")
    assert json.dumps(WEATHER) in system["content"]
    assert '<tool_call>\n{"name": "<function-name>", "arguments": <arguments-json-object>}\n</tool_call>' in system["content"]


def test_the_fallback_writes_past_calls_in_the_format_and_results_as_one_user_turn():
    messages = plan(history(), GenerationOptions(tools=[WEATHER, TIME]), FakeTokenizer(CHATML)).messages
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    calls = parser_for("hermes").parse(messages[2]["content"]).tool_calls
    assert [(c.name, c.arguments) for c in calls] == [("get_weather", {"city": "Paris"}), ("get_time", {})]
    assert messages[3]["content"] == "<tool_response>\n18 C\n</tool_response>\n<tool_response>\n14:05\n</tool_response>"
    assert all(set(m) == {"role", "content"} for m in messages)  # nothing the template cannot render


def test_the_fallback_adds_a_system_prompt_when_there_is_none():
    messages = plan(check_messages([{"role": "user", "content": "hi"}]), GenerationOptions(tools=[WEATHER]),
                    FakeTokenizer(CHATML)).messages
    assert messages[0]["role"] == "system" and "get_weather" in messages[0]["content"]


def test_tool_choice_none_offers_nothing_but_still_renders_a_history_with_calls():
    prompt = plan(history(), GenerationOptions(tools=[WEATHER, TIME], tool_choice="none"), FakeTokenizer(CHATML))
    assert (prompt.tools, prompt.tool_format, prompt.grammar) == (None, None, None)
    assert "# Tools" not in prompt.messages[0]["content"]
    assert "<tool_call>" in prompt.messages[2]["content"]


def test_a_request_without_tools_is_left_alone():
    messages = check_messages([{"role": "user", "content": "hi"}])
    assert plan(messages, GenerationOptions(), FakeTokenizer(CHATML)).messages is messages


def test_the_format_can_be_overridden():
    prompt = plan(history(), GenerationOptions(tools=[WEATHER], tool_format="phi4_mini"), FakeTokenizer(CHATML))
    assert prompt.tool_format == "phi4_mini"
    assert 'functools[{"name": "get_weather", "arguments": {"city": "Paris"}}' in prompt.messages[2]["content"]


# -- the grammar -----------------------------------------------------------------------------------

def _grammar(choice, parallel=True, tool_format="hermes"):
    options = GenerationOptions(tools=[WEATHER, TIME], tool_choice=choice, parallel_tool_calls=parallel)
    return json.loads(tool_grammar(options.tools, choice, parallel, parser_for(tool_format).syntax))["format"]


def test_required_makes_the_whole_answer_calls_of_the_offered_tools():
    fmt = _grammar("required")
    assert fmt["type"] == "tags_with_separator" and fmt["at_least_one"] and not fmt["stop_after_first"]
    assert [t["begin"] for t in fmt["tags"]] == ['<tool_call>\n{"name": "get_weather", "arguments": ',
                                                 '<tool_call>\n{"name": "get_time", "arguments": ']
    assert fmt["tags"][0]["content"]["json_schema"] == WEATHER["function"]["parameters"]
    assert fmt["tags"][0]["end"] == "}\n</tool_call>"


def test_a_named_tool_allows_exactly_one_call_of_it():
    fmt = _grammar("get_time")
    assert [t["begin"] for t in fmt["tags"]] == ['<tool_call>\n{"name": "get_time", "arguments": ']
    assert fmt["stop_after_first"] and fmt["at_least_one"]  # the call is required, not only allowed


def test_auto_constrains_only_after_the_trigger():
    fmt = _grammar("auto", parallel=False)
    assert fmt["type"] == "triggered_tags" and fmt["triggers"] == ["<tool_call>"]
    assert not fmt["at_least_one"] and fmt["stop_after_first"]


def test_a_wrapped_format_puts_its_calls_inside_the_wrapper():
    fmt = _grammar("required", tool_format="phi4_mini")
    assert (fmt["begin"], fmt["end"]) == ("functools[", "]")
    assert fmt["content"]["separator"] == ", "


def test_pythonic_calls_are_keyword_arguments_each_valued_by_its_own_schema():
    fmt = _grammar("required", tool_format="llama3_pythonic")
    assert (fmt["begin"], fmt["end"]) == ("[", "]") and fmt["content"]["separator"] == ", "
    weather, time = fmt["content"]["tags"]
    assert (weather["begin"], weather["end"], time["begin"]) == ("get_weather(", ")", "get_time(")
    city = weather["content"]["elements"]
    assert city[0] == {"type": "const_string", "value": "city="}
    assert city[1]["json_schema"] == {"type": "string"}


def test_pythonic_optional_arguments_may_each_be_left_out():
    search = {"type": "function", "function": {"name": "search", "parameters": {"type": "object", "properties": {
        "query": {"type": "string"}, "limit": {"type": "integer"}, "exact": {"type": "boolean"}}, "required": ["query"]}}}
    options = GenerationOptions(tools=[search], tool_choice="search")
    fmt = json.loads(tool_grammar(options.tools, "search", True, parser_for("llama3_pythonic").syntax))["format"]
    query, limit, exact = fmt["content"]["tags"][0]["content"]["elements"]
    assert query["elements"][0]["value"] == "query="
    assert [e["type"] for e in limit["elements"]] == ["sequence", "grammar"]  # written, or nothing
    assert limit["elements"][0]["elements"][0]["value"] == ", limit="
    assert exact["elements"][0]["elements"][1]["elements"] == [{"type": "const_string", "value": "True"},
                                                               {"type": "const_string", "value": "False"}]


def test_pythonic_auto_is_triggered_by_the_opening_of_an_offered_call_not_by_a_bracket():
    fmt = _grammar("auto", tool_format="llama3_pythonic")
    assert fmt["type"] == "triggered_tags" and fmt["triggers"] == ["[get_weather(", "[get_time("]
    assert [t["begin"] for t in fmt["tags"]] == ["[get_weather(", "[get_time("] and fmt["stop_after_first"]


@pytest.mark.parametrize("name", ["max-results", "from"])
def test_a_parameter_python_cannot_pass_is_refused_for_the_pythonic_format(name):
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
        name: {"type": "string"}}}}}
    options = GenerationOptions(tools=[tool], tool_choice="required")
    with pytest.raises(OptionsError, match=f"{name}.*llama3_pythonic"):
        tool_grammar(options.tools, "required", True, parser_for("llama3_pythonic").syntax)


def test_no_grammar_for_none_or_when_calls_are_not_constrained():
    options = GenerationOptions(tools=[WEATHER])
    assert tool_grammar(options.tools, "none", True, parser_for("hermes").syntax) is None
    assert plan(history(), GenerationOptions(tools=[WEATHER], constrain_tool_calls=False),
                FakeTokenizer(CHATML)).grammar is None


# -- the result ------------------------------------------------------------------------------------

def finished(text: str, reason: str = "stop", tool_format: str | None = "hermes") -> GenerationResult:
    """The result a runner's Feed ends with after streaming `text` in two pieces (the one parse)."""
    ended = []
    sink = type("Sink", (), {"put": lambda self, event: ended.append(event), "flush": lambda self: None})()
    feed = Feed(sink, Handle(), Accepted(1, tool_format=tool_format))
    feed.piece(text[:7], 1)
    feed.piece(text[7:], 2)
    feed.end(GenerationResult(text, 10, 20, reason, Metrics(0, 0, 0, 0)))
    return ended[-1].result


def test_a_result_with_a_call_carries_it_and_says_tool_calls():
    text = 'Checking.<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    result = finished(text)
    assert result.finish_reason == "tool_calls" and result.text == "Checking."
    assert [(c.name, c.arguments) for c in result.tool_calls] == [("get_weather", {"city": "Paris"})]


@pytest.mark.parametrize("reason", ["length", "cancelled"])
def test_a_cut_answer_keeps_its_finish_reason(reason):
    text = '<tool_call>{"name": "get_time", "arguments": {}}</tool_call><tool_call>{"name": "get'
    assert finished(text, reason).finish_reason == reason


def test_without_tools_a_result_is_unchanged():
    text = '<tool_call>{"name": "f", "arguments": {}}</tool_call>'
    result = finished(text, tool_format=None)
    assert result.text == text and result.tool_calls == () and result.finish_reason == "stop"
