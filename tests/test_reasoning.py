"""Thinking models (engine/reasoning.py): the reasoning read apart from the answer as it streams,
markers split anywhere, a thinking that never closes; the templates of Qwen 3 and a DeepSeek-R1
distill (tests/templates/) read for their markers and their switch; on a tiny model, the
template's switch and the engine's split end to end."""

from pathlib import Path

import pytest

from ovchat.engine import GenerationOptions, OptionsError
from ovchat.engine.events import Accepted, Text
from ovchat.engine.reasoning import INSIDE, MAY_OPEN, OFF, Splitter, Thinking, constrained, start_of, thinking_of
from ovchat.engine.stream import Feed, Handle
from test_stream import result_of

TEMPLATES = Path(__file__).parent / "templates"
QWEN3 = (TEMPLATES / "qwen3.jinja").read_text()
DEEPSEEK = (TEMPLATES / "deepseek-r1-distill-qwen.jinja").read_text()


def split(pieces, start=MAY_OPEN):
    splitter = Splitter(Thinking(), start)
    parts = [part for piece in pieces for part in splitter.feed(piece)] + splitter.finish()
    reasoning = "".join(text for is_reasoning, text in parts if is_reasoning)
    answer = "".join(text for is_reasoning, text in parts if not is_reasoning)
    return reasoning, answer


QWEN_ANSWER = "<think>\nThe user asks for France's capital.\nIt is Paris.\n</think>\n\nThe capital is Paris."


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 100])
def test_the_thinking_is_read_apart_wherever_the_pieces_cut_the_markers(size):
    pieces = [QWEN_ANSWER[i:i + size] for i in range(0, len(QWEN_ANSWER), size)]
    assert split(pieces) == ("The user asks for France's capital.\nIt is Paris.", "The capital is Paris.")


def test_every_cut_of_the_closing_marker_is_held_until_it_is_whole():
    for cut in range(len(QWEN_ANSWER) + 1):
        assert split([QWEN_ANSWER[:cut], QWEN_ANSWER[cut:]])[1] == "The capital is Paris.", cut


def test_a_prompt_that_opened_the_thinking_starts_inside_it():
    assert split(["Let me think.\n</think>\n\nParis."], start=INSIDE) == ("Let me think.", "Paris.")


def test_a_thinking_that_never_closes_is_all_reasoning():
    assert split(["<think>\nstill thinking when the tokens ran out ", "</thi"]) == (
        "still thinking when the tokens ran out </thi", "")
    assert split(["cut off mid-thought"], start=INSIDE) == ("cut off mid-thought", "")


def test_an_answer_without_thinking_is_all_answer():
    assert split(["  Paris is ", "the capital."]) == ("", "  Paris is the capital.")
    assert split(["<thi", "s is no marker"]) == ("", "<this is no marker")
    assert split(["<thi"]) == ("", "<thi")


def test_the_templates_are_read_for_their_markers_and_their_switch():
    assert thinking_of(QWEN3) == Thinking(can_turn_off=True)
    assert thinking_of(DEEPSEEK) == Thinking(can_turn_off=False)
    assert thinking_of("{{ messages[0].content }}") is None
    assert start_of("<|im_start|>assistant\n", Thinking()) == MAY_OPEN
    assert start_of("<|im_start|>assistant\n<think>\n\n</think>\n\n", Thinking()) == OFF
    assert start_of("<｜Assistant｜><think>\n", Thinking()) == INSIDE


def test_a_constraint_applies_after_the_thinking():
    schema = {"type": "json_schema", "json_schema": {"type": "object"}}
    inside = constrained(schema, Thinking(), INSIDE)
    assert inside["elements"][0] == {"type": "tag", "begin": "", "content": {"type": "any_text"}, "end": "</think>"}
    assert inside["elements"][1] == schema
    may_open = constrained(schema, Thinking(), MAY_OPEN)  # it may think, or answer at once
    assert may_open["elements"][0]["type"] == "or" and may_open["elements"][1] == schema
    assert constrained(schema, Thinking(), OFF) == schema


class Sink(list):
    def put(self, event):
        self.append(event)

    def flush(self):
        pass


def test_the_feed_marks_the_reasoning_counts_its_tokens_and_ends_with_the_answer_alone():
    sink = Sink()
    feed = Feed(sink, Handle(), Accepted(3), splitter=Splitter(Thinking(), MAY_OPEN))
    pieces = ["<think>\nA", " thought", ".\n</th", "ink>\n\nThe", " answer."]
    for tokens, piece in enumerate(pieces, 1):
        feed.piece(piece, tokens)
    feed.end(result_of("".join(pieces), len(pieces)))
    texts = [e for e in sink if isinstance(e, Text)]
    assert "".join(e.text for e in texts if e.reasoning) == "A thought."
    assert "".join(e.text for e in texts if not e.reasoning) == "The answer."
    result = sink[-1].result
    # Reasoning tokens: those before the one that completed the closing marker.
    assert (result.reasoning, result.text, result.reasoning_tokens, result.output_tokens) == (
        "A thought.", "The answer.", 3, 5)


def test_tool_calls_are_read_from_the_answer_after_the_thinking():
    sink = Sink()
    feed = Feed(sink, Handle(), Accepted(3, tool_format="hermes"), ("get_weather",), Splitter(Thinking(), MAY_OPEN))
    answer = ('<think>\nI could write <tool_call>{"name": "nope"}</tool_call> here.\n</think>\n\n'
              '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>')
    for i in range(0, len(answer), 4):
        feed.piece(answer[i:i + 4], i // 4 + 1)
    feed.end(result_of(answer, len(answer) // 4 + 1))
    result = sink[-1].result
    assert [(call.name, call.arguments) for call in result.tool_calls] == [("get_weather", {"city": "Paris"})]
    assert "nope" in result.reasoning and result.finish_reason == "tool_calls"


# ---- on a tiny model, with the real templates -----------------------------------------------------

@pytest.fixture(scope="module")
def tiny_engine(tiny_phi3_dir):
    from ovchat.engine import Engine

    engine = Engine.load(tiny_phi3_dir, batching=True, warmup=False)
    yield engine
    engine.close()


def test_qwen3s_switch_turns_the_thinking_off_and_a_template_without_one_is_refused(tiny_engine):
    tiny_engine.tokenizer.set_chat_template(QWEN3)
    off = tiny_engine.generate("Hi", GenerationOptions(max_new_tokens=4, thinking=False, ignore_eos=True))
    assert off.reasoning == "" and off.reasoning_tokens == 0
    from ovchat.engine.prompt import prepare

    prepared = prepare("Hi", GenerationOptions(thinking=False), tiny_engine.tokenizer, None)
    assert prepared.text.endswith("<think>\n\n</think>\n\n") and not prepared.thinks
    assert prepare("Hi", GenerationOptions(), tiny_engine.tokenizer, None).thinks
    tiny_engine.tokenizer.set_chat_template(DEEPSEEK)
    with pytest.raises(OptionsError, match="always thinks"):
        tiny_engine.generate("Hi", GenerationOptions(max_new_tokens=4, thinking=False))


def test_a_thinking_cut_by_the_token_limit_is_all_reasoning_streamed_as_such(tiny_engine):
    tiny_engine.tokenizer.set_chat_template(DEEPSEEK)  # the prompt opens <think>: the answer starts inside it
    with tiny_engine.stream("Hi", GenerationOptions(max_new_tokens=12, ignore_eos=True)) as stream:
        pieces = list(stream.pieces())
    result = stream.result
    assert result.finish_reason == "length" and result.text == "" and stream.text == ""
    assert result.reasoning and result.reasoning == "".join(p.text for p in pieces if p.reasoning).rstrip()
    assert result.reasoning_tokens == result.output_tokens == 12


def test_a_json_schema_constrains_only_what_follows_the_thinking(tiny_engine):
    tiny_engine.tokenizer.set_chat_template(DEEPSEEK)
    options = GenerationOptions(max_new_tokens=12, ignore_eos=True, json_schema={"type": "object"})
    result = tiny_engine.generate("Hi", options)  # the random model never closes its thinking
    assert result.reasoning and not result.reasoning.lstrip().startswith("{")  # free text, not forced JSON
    tiny_engine.tokenizer.set_chat_template(QWEN3)
    off = tiny_engine.generate("Hi", GenerationOptions(max_new_tokens=12, thinking=False, json_schema={"type": "object"}))
    assert off.text.lstrip().startswith("{") and off.reasoning == ""
