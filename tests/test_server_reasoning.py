"""A thinking model through `ovchat serve`: its reasoning in message.reasoning_content and
delta.reasoning_content (never in content), counted in usage, turned off by reasoning_effort
"none" or chat_template_kwargs, left inline by --reasoning-format inline; bad values are a 400.
With a fake engine that thinks first (its markers cut across tokens), and once on a tiny model
with a DeepSeek-R1 distill's template."""

import json

import pytest

from server_harness import THOUGHT, FakeEngine, request, running_server

pytestmark = pytest.mark.timeout(120)
CHAT = "/v1/chat/completions"


def ask(url, **fields):
    return request(url, "POST", CHAT, {"messages": [{"role": "user", "content": "Hi"}], **fields})


def events(url, **fields):
    status, text, _ = ask(url, stream=True, stream_options={"include_usage": True}, **fields)
    assert status == 200, text
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]


@pytest.fixture(scope="module")
def thinker():
    engine = FakeEngine(thinks=True)
    with running_server(lambda: engine) as (url, _):
        yield url, engine


def test_the_reasoning_is_apart_from_the_content_and_counted(thinker):
    url, _ = thinker
    status, body, _ = ask(url)
    message = body["choices"][0]["message"]
    assert status == 200 and message["content"] == "Hello, world."
    assert message["reasoning_content"] == "The user wants a greeting."
    assert body["usage"]["completion_tokens"] == len(THOUGHT) + 4
    assert body["usage"]["completion_tokens_details"]["reasoning_tokens"] == 4  # those before the token closing it


def test_a_stream_sends_the_reasoning_as_its_own_deltas_first(thinker):
    chunks = events(thinker[0])
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    reasoning = "".join(d.get("reasoning_content", "") for d in deltas)
    content = "".join(d.get("content", "") for d in deltas)
    assert (reasoning, content) == ("The user wants a greeting.", "Hello, world.")
    first_content = next(i for i, d in enumerate(deltas) if d.get("content"))
    assert all("reasoning_content" not in d for d in deltas[first_content:])
    assert chunks[-1]["usage"]["completion_tokens_details"]["reasoning_tokens"] == 4


@pytest.mark.parametrize("fields, thinking", [
    ({"reasoning_effort": "none"}, False), ({"reasoning_effort": "high"}, True),
    ({"chat_template_kwargs": {"enable_thinking": False}}, False), ({}, None),
])
def test_the_switch_reaches_the_engine(thinker, fields, thinking):
    url, engine = thinker
    status, body, _ = ask(url, **fields)
    assert status == 200 and engine.seen_options[-1].thinking is thinking
    if thinking is False:  # the fake then does not think, as Qwen 3 with enable_thinking false
        assert "reasoning_content" not in body["choices"][0]["message"]


def test_more_template_variables_pass_through(thinker):
    url, engine = thinker
    assert ask(url, chat_template_kwargs={"custom_flag": 1})[0] == 200
    assert engine.seen_options[-1].template_kwargs == {"custom_flag": 1}


@pytest.mark.parametrize("fields, param", [
    ({"reasoning_effort": "extreme"}, "reasoning_effort"),
    ({"reasoning_effort": 3}, "reasoning_effort"),
    ({"chat_template_kwargs": ["enable_thinking"]}, "chat_template_kwargs"),
    ({"chat_template_kwargs": {"enable_thinking": "no"}}, "chat_template_kwargs.enable_thinking"),
    ({"reasoning_effort": "none", "chat_template_kwargs": {"enable_thinking": True}}, "reasoning_effort"),
])
def test_bad_reasoning_fields_are_a_400_naming_them(thinker, fields, param):
    status, body, _ = ask(thinker[0], **fields)
    assert status == 400 and body["error"]["param"] == param


def test_an_earlier_answers_reasoning_may_come_back_in_the_history(thinker):
    history = [{"role": "user", "content": "Hi"},
               {"role": "assistant", "content": "Hello.", "reasoning_content": "A greeting."},
               {"role": "user", "content": "Again"}]
    assert request(thinker[0], "POST", CHAT, {"messages": history})[0] == 200


def test_inline_format_leaves_the_thinking_in_the_content():
    with running_server(lambda: FakeEngine(thinks=True), reasoning_format="inline") as (url, _):
        message = ask(url)[1]["choices"][0]["message"]
    assert message["content"] == "".join(THOUGHT) + "Hello, world." and "reasoning_content" not in message


def test_a_tiny_model_with_a_deepseek_template_streams_only_reasoning(tiny_phi3_dir):
    from pathlib import Path

    from ovchat.engine import Engine

    def load():
        engine = Engine.load(tiny_phi3_dir, batching=True, warmup=False)
        engine.tokenizer.set_chat_template((Path(__file__).parent / "templates" / "deepseek-r1-distill-qwen.jinja").read_text())
        return engine

    with running_server(load) as (url, _):
        chunks = events(url, max_tokens=8, ignore_eos=True)
        status, body, _ = ask(url, max_tokens=8, ignore_eos=True, reasoning_effort="none")
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert "".join(d.get("content", "") for d in deltas) == ""  # the template opened <think>; it never closed
    assert "".join(d.get("reasoning_content", "") for d in deltas).strip()
    assert chunks[-1]["usage"]["completion_tokens_details"]["reasoning_tokens"] == 8
    assert status == 400 and body["error"]["param"] == "reasoning_effort"  # this template cannot turn it off


@pytest.mark.parametrize("thinking, thought_on_stderr", [("show", True), ("hide", False)])
def test_ovchat_generate_prints_the_answer_and_the_thinking_apart(thinker, thinking, thought_on_stderr):
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "ovchat", "generate", "--server", thinker[0], "--thinking", thinking,
                           "Hi"], capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if k != "OVCHAT_API_KEY"})
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Hello, world.\n"  # not a terminal: stdout holds the answer alone
    assert ("The user wants a greeting." in done.stderr) is thought_on_stderr


def test_ovchat_generate_thinking_off_asks_the_server_to_turn_it_off(thinker):
    import os
    import subprocess
    import sys

    url, engine = thinker
    done = subprocess.run([sys.executable, "-m", "ovchat", "generate", "--server", url, "--thinking", "off", "Hi"],
                          capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if k != "OVCHAT_API_KEY"})
    assert done.returncode == 0 and done.stdout == "Hello, world.\n" and engine.seen_options[-1].thinking is False


# ---- the Anthropic Messages API: thinking blocks ---------------------------------------------------

def test_anthropic_messages_carry_the_thinking_as_its_own_block(thinker):
    anthropic = pytest.importorskip("anthropic")
    url, engine = thinker
    client = anthropic.Anthropic(base_url=url, api_key="unused", max_retries=0, timeout=30)
    hi = [{"role": "user", "content": "Hi"}]
    message = client.messages.create(model="fake-model", max_tokens=64, messages=hi,
                                     thinking={"type": "enabled", "budget_tokens": 1024})
    assert [block.type for block in message.content] == ["thinking", "text"]
    assert (message.content[0].thinking, message.content[1].text) == ("The user wants a greeting.", "Hello, world.")
    assert engine.seen_options[-1].thinking is True
    with client.messages.stream(model="fake-model", max_tokens=64, messages=hi) as stream:
        kinds = [event.delta.type for event in stream if event.type == "content_block_delta"]
        final = stream.get_final_message()
    assert kinds.index("text_delta") > kinds.index("thinking_delta") and "thinking_delta" not in kinds[kinds.index("text_delta"):]
    assert [block.type for block in final.content] == ["thinking", "text"] and final.content[1].text == "Hello, world."
    omitted = client.messages.create(model="fake-model", max_tokens=64, messages=hi,
                                     thinking={"type": "adaptive", "display": "omitted"})
    assert [block.type for block in omitted.content] == ["text"]
    disabled = client.messages.create(model="fake-model", max_tokens=64, messages=hi, thinking={"type": "disabled"})
    assert engine.seen_options[-1].thinking is False and [block.type for block in disabled.content] == ["text"]


# ---- the Responses API: reasoning items -------------------------------------------------------------

def test_responses_carry_a_reasoning_item_first_and_chain_past_it(thinker):
    openai = pytest.importorskip("openai")
    url, engine = thinker
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=30)
    first = client.responses.create(model="fake-model", input="Hi")
    assert [item.type for item in first.output] == ["reasoning", "message"]
    assert first.output[0].content[0].text == "The user wants a greeting." and first.output_text == "Hello, world."
    assert first.usage.output_tokens_details.reasoning_tokens == 4
    # The next turn carries it (stored); the reasoning item stays out of the model's prompt.
    second = client.responses.create(model="fake-model", input="Again", previous_response_id=first.id)
    prompt = json.dumps(engine.seen_prompts[-1])
    assert second.output_text == "Hello, world." and "Hello, world." in prompt and "wants a greeting" not in prompt
    sent_back = client.responses.create(model="fake-model", input=[
        {"role": "user", "content": "Hi"}, first.output[0].model_dump(exclude_none=True),
        {"role": "assistant", "content": "Hello, world."}, {"role": "user", "content": "Again"}])
    assert sent_back.status == "completed"


def test_a_streamed_response_sends_the_reasoning_events_before_the_text(thinker):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=thinker[0] + "/v1", api_key="unused", max_retries=0, timeout=30)
    kinds = [event.type for event in client.responses.create(model="fake-model", input="Hi", stream=True)]
    assert kinds.index("response.reasoning_text.done") < kinds.index("response.output_text.delta")
    assert "response.reasoning_text.delta" in kinds and kinds[-1] == "response.completed"
    with client.responses.stream(model="fake-model", input="Hi") as stream:
        final = stream.get_final_response()
    assert [item.type for item in final.output] == ["reasoning", "message"]
    assert final.usage.output_tokens_details.reasoning_tokens == 4


@pytest.mark.parametrize("reasoning, thinking", [({"effort": "none"}, False), ({"effort": "low", "summary": "auto"}, True),
                                                 ({"summary": "detailed"}, None)])
def test_the_responses_reasoning_field_is_the_switch(thinker, reasoning, thinking):
    url, engine = thinker
    status, body, _ = request(url, "POST", "/v1/responses", {"input": "Hi", "reasoning": reasoning, "store": False})
    assert status == 200 and engine.seen_options[-1].thinking is thinking


@pytest.mark.parametrize("reasoning, param", [({"effort": "huge"}, "reasoning.effort"), ("high", "reasoning"),
                                              ({"summary": "all"}, "reasoning.summary"),
                                              ({"effort": "low", "budget": 5}, "reasoning.budget")])
def test_a_bad_responses_reasoning_field_is_a_400_naming_it(thinker, reasoning, param):
    status, body, _ = request(thinker[0], "POST", "/v1/responses", {"input": "Hi", "reasoning": reasoning})
    assert status == 400 and body["error"]["param"] == param
