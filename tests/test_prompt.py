"""Prompt preparation: validation, and fitting chats to the context window (fake tokenizer:
one token per word, a template that joins the messages)."""

import openvino as ov
import pytest

from ovchat.engine import GenerationOptions, PromptError
from ovchat.engine.prompt import prepare


class WordTokenizer:
    chat_template = "{{ messages }}"

    def encode(self, text, add_special_tokens=True):
        return list(range(len(text.split())))

    def apply_chat_template(self, messages, add_generation_prompt=True):
        return " ".join(f"{m['role']}: {m['content']}" for m in messages) + (" assistant:" if add_generation_prompt else "")


def chat(n_turns, words=5):
    messages = [{"role": "system", "content": "be brief"}]
    for i in range(n_turns):
        messages.append({"role": "user", "content": " ".join(["q"] * words)})
        messages.append({"role": "assistant", "content": " ".join(["a"] * words)})
    return messages + [{"role": "user", "content": "last question"}]


@pytest.mark.parametrize("prompt", ["", "   ", [], [{"role": "user"}], [{"role": "robot", "content": "hi"}],
                                    [{"role": "user", "content": 3}], [{"role": "user", "content": " "}],
                                    ["not", "a", "dict"], [1, -2, 3]])
def test_malformed_prompts_are_refused(prompt):
    with pytest.raises(PromptError):
        prepare(prompt, GenerationOptions(), WordTokenizer(), 100)


def test_a_string_becomes_one_user_turn():
    prepared = prepare("hello there", GenerationOptions(), WordTokenizer(), None)
    assert prepared.messages == [{"role": "user", "content": "hello there"}]


def test_a_raw_string_is_sent_as_is():
    prepared = prepare("hello there", GenerationOptions(apply_chat_template=False), WordTokenizer(), None)
    assert prepared.inputs == "hello there"


def test_token_ids_become_an_int64_tensor():
    prepared = prepare([5, 6, 7], GenerationOptions(), WordTokenizer(), 100)
    assert isinstance(prepared.inputs, ov.Tensor)
    assert list(prepared.inputs.shape) == [1, 3]


def test_a_long_chat_drops_its_oldest_turns_and_keeps_the_system_prompt():
    messages = chat(10)  # ~12 words a turn pair
    prepared = prepare(messages, GenerationOptions(max_new_tokens=10), WordTokenizer(), 60, trim=True)
    assert prepared.dropped_messages > 0
    assert prepared.messages[0]["role"] == "system"
    assert prepared.messages[-1]["content"] == "last question"
    assert len(prepared.messages) == len(messages) - prepared.dropped_messages
    text = WordTokenizer().apply_chat_template(prepared.messages)
    assert len(WordTokenizer().encode(text)) + 10 <= 60


def test_without_trim_a_chat_keeps_every_message_and_clamps_the_answer():
    prepared = prepare(chat(3), GenerationOptions(max_new_tokens=100), WordTokenizer(), 60)
    assert prepared.dropped_messages == 0
    assert prepared.options.max_new_tokens < 100


def test_a_prompt_longer_than_the_context_is_a_clear_error():
    with pytest.raises(PromptError, match="context holds 10"):
        prepare(" ".join(["w"] * 50), GenerationOptions(apply_chat_template=False), WordTokenizer(), 10)
    with pytest.raises(PromptError, match="context holds 10"):
        prepare([1] * 11, GenerationOptions(), WordTokenizer(), 10)



def test_trimming_keeps_user_first_after_the_system_prompt():
    # A history whose oldest turn after the system prompt would be the assistant's is refused by
    # strict templates (Phi-3's, Mistral's): drop whole exchanges instead.
    messages = chat(6, words=7)
    for room in range(20, 90, 3):
        prepared = prepare(messages, GenerationOptions(max_new_tokens=5), WordTokenizer(), room, trim=True)
        roles = [m["role"] for m in prepared.messages]
        assert roles[0] == "system" and roles[1] == "user", (room, roles)
        assert all(a != b for a, b in zip(roles[1:], roles[2:])), roles  # user and assistant alternate


def test_a_chat_after_an_assistant_opening_still_trims_to_a_user_turn():
    messages = [{"role": "system", "content": "s"}, {"role": "assistant", "content": "hello " * 20},
                {"role": "user", "content": "q " * 5}, {"role": "assistant", "content": "a " * 5},
                {"role": "user", "content": "last"}]
    prepared = prepare(messages, GenerationOptions(max_new_tokens=2), WordTokenizer(), 20, trim=True)
    assert [m["role"] for m in prepared.messages][:2] == ["system", "user"]
    assert prepared.dropped_messages == len(messages) - len(prepared.messages)


def test_token_ids_outside_the_vocabulary_are_refused():
    tokenizer = WordTokenizer()
    tokenizer.vocab_size = 100
    assert prepare([5, 99], GenerationOptions(), tokenizer, 50).input_tokens == 2
    with pytest.raises(PromptError, match="Token id 100 is not in the model's vocabulary"):
        prepare([5, 100], GenerationOptions(), tokenizer, 50)
