"""Tool-call parsers (no model): answers written in each format as its own documentation shows
them (Hermes-2-Pro / Qwen2.5 function calling, Meta's Llama 3.1 and 3.2 prompt-format pages,
Microsoft's Phi-4-mini function-calling guide, mistral-common), with text before a call, several
calls, malformed calls; and the same answers streamed in pieces give the same calls."""

import json

import pytest

from ovchat.engine.tool_parsers import (PARSERS, CallDelta, IncrementalToolParser, TextDelta, format_for_template,
                                        parser_for)

WEATHER_SF = {"location": "San Francisco, CA", "unit": "celsius"}

# (format, answer, expected content, expected calls as (name, arguments))
DOCUMENTED = [
    ("hermes", '<tool_call>\n{"name": "get_current_temperature", "arguments": {"location": "San Francisco, CA", '
               '"unit": "celsius"}}\n</tool_call>',
     "", [("get_current_temperature", WEATHER_SF)]),
    ("hermes", 'Let me look both up.\n<tool_call>\n{"name": "get_current_temperature", "arguments": '
               '{"location": "San Francisco, CA", "unit": "celsius"}}\n</tool_call>\n<tool_call>\n'
               '{"name": "get_temperature_date", "arguments": {"location": "San Francisco, CA", "date": "2024-10-01", '
               '"unit": "celsius"}}\n</tool_call>',
     "Let me look both up.", [("get_current_temperature", WEATHER_SF),
                              ("get_temperature_date", {**WEATHER_SF, "date": "2024-10-01"})]),
    ("hermes", '<tool_call>[{"name": "get_time", "arguments": {}}, {"name": "get_weather", "arguments": '
               '{"city": "Paris"}}]</tool_call>',  # SmolLM2's list-in-one-tag form
     "", [("get_time", {}), ("get_weather", {"city": "Paris"})]),
    ("llama3_json", '{"name": "get_current_conditions", "parameters": {"location": "San Francisco, CA", "unit": "Fahrenheit"}}',
     "", [("get_current_conditions", {"location": "San Francisco, CA", "unit": "Fahrenheit"})]),
    ("llama3_json", '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}; '
                    '{"name": "get_time", "parameters": {"timezone": "CET"}}',
     "", [("get_weather", {"city": "Paris"}), ("get_time", {"timezone": "CET"})]),
    ("llama3_pythonic", '[get_weather(city="San Francisco", metric="celsius"), get_time(timezone=\'PST\', exact=True)]',
     "", [("get_weather", {"city": "San Francisco", "metric": "celsius"}),
          ("get_time", {"timezone": "PST", "exact": True})]),
    ("llama3_pythonic", "<|python_start|>[search(query='openvino', limit=3, tags=['a', 'b'])]<|python_end|>",
     "", [("search", {"query": "openvino", "limit": 3, "tags": ["a", "b"]})]),
    ("llama3_pythonic", 'Let me check. [get_weather(city="Paris", days=3, metric=true, note=null, tag="caf\\u00e9")]',
     "Let me check.", [("get_weather", {"city": "Paris", "days": 3, "metric": True, "note": None, "tag": "café"})]),
    ("llama3_pythonic", "[get_time(timezone='CET', offset=-1.5)] I asked for the time.",
     "I asked for the time.", [("get_time", {"timezone": "CET", "offset": -1.5})]),
    ("phi4_mini", 'functools[{"name": "get_match_result", "arguments": {"match": "Arsenal vs ManCity"}}]',
     "", [("get_match_result", {"match": "Arsenal vs ManCity"})]),
    ("phi4_mini", 'I will book both. functools[{"name": "book_flight", "arguments": {"to": "Paris"}}, '
                  '{"name": "book_hotel", "parameters": {"city": "Paris", "nights": 2}}]',
     "I will book both.", [("book_flight", {"to": "Paris"}), ("book_hotel", {"city": "Paris", "nights": 2})]),
    ("mistral", '[TOOL_CALLS] [{"name": "get_current_weather", "arguments": {"location": "Paris, France", "format": "celsius"}}]',
     "", [("get_current_weather", {"location": "Paris, France", "format": "celsius"})]),
    ("mistral", '[{"name": "add", "arguments": {"a": 3.5, "b": 4}}]',  # [TOOL_CALLS] decoded away
     "", [("add", {"a": 3.5, "b": 4})]),
    ("mistral", '[TOOL_CALLS]add{"a": 3.5, "b": 4}[TOOL_CALLS]multiply[ARGS]{"a": 2, "b": 3}',  # v11+ forms
     "", [("add", {"a": 3.5, "b": 4}), ("multiply", {"a": 2, "b": 3})]),
]

MALFORMED = [  # (format, answer): the call cannot be read, so the whole answer stays text
    ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Par\n</tool_call>'),
    ("hermes", '<tool_call>\nget_weather(city="Paris")\n</tool_call>'),
    ("hermes", '<tool_call>\n{"arguments": {"city": "Paris"}}\n</tool_call>'),
    ("llama3_json", '{"name": "get_weather", "parameters": {"city": "Paris"'),
    ("llama3_pythonic", "[get_weather(city=Paris)]"),
    ("llama3_pythonic", "[get_weather('Paris')]"),
    ("llama3_pythonic", "[get_weather(city=b'Paris')]"),
    ("llama3_pythonic", "[get_weather(**{'city': 'Paris'})]"),
    ("llama3_pythonic", "[get_weather(city={1: 'Paris'})]"),
    ("llama3_pythonic", "[get_weather(city=-'Paris')]"),
    ("llama3_pythonic", "[get_weather(days=1e999)]"),
    ("phi4_mini", 'functools[{"name": "get_weather", "arguments": {"city": "Paris"}'),
    ("mistral", '[TOOL_CALLS] [{"name": "get_weather", "arguments": "Paris"}]'),
]


def _calls(answer):
    return [(c.name, c.arguments) for c in answer.tool_calls]


@pytest.mark.parametrize("tool_format, text, content, calls", DOCUMENTED)
def test_documented_answers_parse_into_their_calls(tool_format, text, content, calls):
    answer = parser_for(tool_format).parse(text)
    assert _calls(answer) == calls
    assert answer.content == content
    assert all(c.id.startswith("call_") for c in answer.tool_calls)
    assert len({c.id for c in answer.tool_calls}) == len(calls)


@pytest.mark.parametrize("tool_format, text", MALFORMED)
def test_a_malformed_call_is_kept_as_text_not_dropped(tool_format, text):
    answer = parser_for(tool_format).parse(text)
    assert answer.tool_calls == ()
    assert answer.content == text.strip()


@pytest.mark.parametrize("tool_format", list(PARSERS))
def test_plain_text_is_text_in_every_format(tool_format):
    text = "The capital of France is Paris. [1] See {the} atlas."
    answer = parser_for(tool_format).parse(text)
    assert (answer.content, answer.tool_calls) == (text, ())


def test_text_after_a_hermes_call_is_kept():
    answer = parser_for("hermes").parse('<tool_call>{"name": "f", "arguments": {}}</tool_call> Done.')
    assert (_calls(answer), answer.content) == ([("f", {})], "Done.")


def test_a_good_call_survives_a_malformed_one_beside_it():
    text = '<tool_call>{"name": "f", "arguments": {}}</tool_call><tool_call>{"name": "g", "arguments": {</tool_call>'
    answer = parser_for("hermes").parse(text)
    assert _calls(answer) == [("f", {})]
    assert answer.content == '<tool_call>{"name": "g", "arguments": {</tool_call>'


def test_a_bracket_that_is_not_a_call_stays_text_before_the_pythonic_call():
    answer = parser_for("llama3_pythonic").parse("See [note(1)] and [get_weather(city='Paris')]")
    assert (_calls(answer), answer.content) == ([("get_weather", {"city": "Paris"})], "See [note(1)] and")


def test_a_pythonic_call_of_a_tool_nobody_offered_is_text():
    # measured: asked to repeat `[get_time(timezone="UTC")]`, the default model wrote `[function_name(...)]`
    parser = parser_for("llama3_pythonic", offered=("get_weather", "get_time"))
    text = '[function_name(timezone="UTC")]'
    assert (parser.parse(text).content, parser.parse(text).tool_calls) == (text, ())
    mixed = parser.parse('[get_time(timezone="UTC"), delete_files(path="/")]')
    assert mixed.tool_calls == ()
    assert _calls(parser.parse('[get_time(timezone="UTC")]')) == [("get_time", {"timezone": "UTC"})]


def test_a_pythonic_opening_is_held_back_while_it_streams():
    reader = IncrementalToolParser(parser_for("llama3_pythonic"))
    assert reader.feed("Sure [get_wea") == [TextDelta("Sure")]
    assert reader.feed("ther(city='Par") == []
    assert reader.feed("is')]") == []  # Python is read whole: the call comes at the end
    deltas, answer = reader.finish()
    assert [d.name for d in deltas if isinstance(d, CallDelta) and d.name] == ["get_weather"]


def test_a_hermes_call_cut_before_its_closing_tag_still_parses_when_its_json_is_whole():
    answer = parser_for("hermes").parse('<tool_call>\n{"name": "f", "arguments": {"x": 1}}')
    assert _calls(answer) == [("f", {"x": 1})]


def test_strings_with_braces_and_quotes_inside_arguments_parse():
    args = {"code": 'print("}{")', "path": "a\\b"}
    text = '<tool_call>{"name": "run", "arguments": ' + json.dumps(args) + "}</tool_call>"
    assert _calls(parser_for("hermes").parse(text)) == [("run", args)]


# -- streamed ------------------------------------------------------------------------------------

def _stream(tool_format, text, size):
    reader = IncrementalToolParser(parser_for(tool_format))
    deltas = []
    for i in range(0, len(text), size):
        deltas += reader.feed(text[i:i + size])
    last, answer = reader.finish()
    return deltas + last, answer


def _rebuild(deltas):
    """What OpenAI's stream accumulator does: join text; per call index, id and name, then arguments."""
    text, calls = "", {}
    for delta in deltas:
        if isinstance(delta, TextDelta):
            text += delta.text
        else:
            call = calls.setdefault(delta.index, {"id": None, "name": None, "arguments": ""})
            if delta.id:
                assert call["id"] is None, "a call's id is sent once"
                call["id"], call["name"] = delta.id, delta.name
            call["arguments"] += delta.arguments
    return text, [calls[i] for i in sorted(calls)]


@pytest.mark.parametrize("size", [1, 3, 7, 1000])
@pytest.mark.parametrize("tool_format, text, content, calls", DOCUMENTED)
def test_a_streamed_answer_rebuilds_the_same_text_and_calls(tool_format, text, content, calls, size):
    deltas, answer = _stream(tool_format, text, size)
    streamed_text, streamed_calls = _rebuild(deltas)
    assert streamed_text == answer.content == content
    assert [(c["name"], json.loads(c["arguments"])) for c in streamed_calls] == calls
    assert [c["id"] for c in streamed_calls] == [c.id for c in answer.tool_calls]  # the result keeps the stream's ids


def test_a_call_streams_its_name_first_then_argument_fragments():
    text = 'Sure.<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}\n</tool_call>'
    deltas, _ = _stream("hermes", text, 4)
    call_deltas = [d for d in deltas if isinstance(d, CallDelta)]
    assert call_deltas[0].name == "get_weather" and call_deltas[0].id and call_deltas[0].arguments == ""
    assert len(call_deltas) > 3  # the arguments came in fragments, as they were generated
    assert all(d.id is None and d.name is None for d in call_deltas[1:])


def test_the_start_of_a_marker_is_held_back_until_it_is_known():
    reader = IncrementalToolParser(parser_for("hermes"))
    assert reader.feed("Checking <tool_") == [TextDelta("Checking")]
    assert reader.feed("box> now") == [TextDelta(" <tool_box> now")]


@pytest.mark.parametrize("tool_format, text", MALFORMED)
def test_a_malformed_streamed_call_ends_as_text(tool_format, text):
    deltas, answer = _stream(tool_format, text, 5)
    assert answer.tool_calls == ()
    assert answer.content == text.strip()


@pytest.mark.parametrize("template, expected", [
    ("{% for tool in tools %}<tools>{{ tool | tojson }}</tools>{% endfor %} <tool_call>", "hermes"),
    ("{{- '<|start_header_id|>ipython<|end_header_id|>' }}", "llama3_json"),
    ("Respond in the format [func_name1(params_name1=params_value1)]", "llama3_pythonic"),
    ("{{ '<|tool|>' + message['tools'] + '<|/tool|>' }}", "phi4_mini"),
    ("{{ '[AVAILABLE_TOOLS]' }}{{ '[TOOL_CALLS]' }}", "mistral"),
    ("{{ '<|im_start|>' + message['role'] }}", "hermes"),  # knows no tools: ovchat's fallback format
    (None, "hermes"),
])
def test_the_format_is_read_from_the_chat_template(template, expected):
    assert format_for_template(template) == expected
