"""The Responses API and logprobs on the real default model (batching mode), through the official
openai client: client.responses.create and .stream with text, a JSON schema and a function tool
(and its result sent back), and chat/completions logprobs. Answers are kept short."""

import json

import pytest

from server_harness import request, running_server

openai = pytest.importorskip("openai")
jsonschema = pytest.importorskip("jsonschema")
pytest.importorskip("uvicorn")
pytestmark = pytest.mark.default_model

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
# Plain greedy: a request that leaves the penalties out gets the model's, and top_logprobs 1 needs none.
PLAIN = dict(temperature=0, frequency_penalty=0, presence_penalty=0, extra_body={"repetition_penalty": 1.0})
WEATHER = {"type": "function", "name": "get_weather", "description": "Get the current weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40}},
                          "required": ["city"], "additionalProperties": False}}


@pytest.fixture(scope="module")
def served(default_model_dir):
    from ovchat.engine import BatchOptions, Engine

    def load():
        return Engine.load(default_model_dir, batching=BatchOptions(max_sequences=4))
    with running_server(load, max_concurrency=4, max_queue=4) as (url, _):
        model = request(url, "GET", "/v1/models")[1]["data"][0]["id"]
        yield openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120), model


def test_chat_logprobs_are_log_probabilities_of_the_tokens_of_the_answer(served):
    client, model = served
    reply = client.chat.completions.create(model=model, messages=FRANCE, max_tokens=24, logprobs=True, top_logprobs=1,
                                           **PLAIN)
    content = reply.choices[0].logprobs.content
    assert len(content) == reply.usage.completion_tokens
    assert "".join(t.token for t in content) == reply.choices[0].message.content
    assert all(t.logprob <= 0 for t in content) and any(t.logprob < 0 for t in content)
    for token in content:  # greedy: the chosen token is the most likely, so it heads its (sorted) alternatives
        values = [alt.logprob for alt in token.top_logprobs]
        assert values == sorted(values, reverse=True) and token.top_logprobs[0].token == token.token
        assert token.top_logprobs[0].logprob == token.logprob
    streamed = [t for chunk in client.chat.completions.create(model=model, messages=FRANCE, max_tokens=24, logprobs=True,
                                                              top_logprobs=1, stream=True, **PLAIN)
                if chunk.choices and chunk.choices[0].logprobs for t in chunk.choices[0].logprobs.content]
    assert [t.token for t in streamed] == [t.token for t in content]
    assert [t.logprob for t in streamed] == pytest.approx([t.logprob for t in content], abs=0.05)


def test_logprobs_refuse_what_the_engine_cannot_know(served):
    client, model = served
    with pytest.raises(openai.BadRequestError) as too_many:
        client.chat.completions.create(model=model, messages=FRANCE, max_tokens=4, logprobs=True, top_logprobs=5)
    assert too_many.value.body["param"] == "top_logprobs" and "chosen token" in too_many.value.message
    sampled = client.chat.completions.create(model=model, messages=FRANCE, max_tokens=8, temperature=0.8, seed=3,
                                             logprobs=True)  # the chosen tokens' logprobs: always known
    assert all(t.logprob <= 0 and t.top_logprobs == [] for t in sampled.choices[0].logprobs.content)


def test_completions_logprobs_in_the_legacy_shape(served):
    client, model = served
    choice = client.completions.create(model=model, prompt="The capital of France is", max_tokens=6, logprobs=1,
                                       **PLAIN).choices[0]
    lp = choice.logprobs
    assert "".join(lp.tokens) == choice.text and len(lp.token_logprobs) == 6
    assert all(v <= 0 for v in lp.token_logprobs) and lp.text_offset[0] == 0
    assert [list(top) for top in lp.top_logprobs] == [[t] for t in lp.tokens]


def test_responses_create_and_stream_answer_the_same(served):
    client, model = served
    reply = client.responses.create(model=model, input="What is the capital of France?", temperature=0,
                                    max_output_tokens=32, instructions="Answer in one sentence.")
    assert "Paris" in reply.output_text and reply.status in ("completed", "incomplete")
    assert reply.usage.input_tokens > 5 and 0 < reply.usage.output_tokens <= 32
    with client.responses.stream(model=model, input="What is the capital of France?", temperature=0,
                                 max_output_tokens=32, instructions="Answer in one sentence.") as stream:
        events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:-1] == ["response.output_text.done", "response.content_part.done", "response.output_item.done"]
    assert kinds[-1] == ("response.completed" if reply.status == "completed" else "response.incomplete")
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == reply.output_text
    assert events[-1].response.output_text == reply.output_text


def test_responses_text_format_json_schema_validates(served):
    client, model = served
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40},
                                               "country": {"type": "string", "maxLength": 40}},
              "required": ["city", "country"], "additionalProperties": False}
    reply = client.responses.create(model=model, input="What is the capital of France?", max_output_tokens=64,
                                    temperature=0,
                                    text={"format": {"type": "json_schema", "name": "capital", "schema": schema}})
    jsonschema.validate(json.loads(reply.output_text), schema)


def test_a_function_tool_round_trip_through_responses(served):
    client, model = served
    called = client.responses.create(model=model, input="What is the weather in Paris?", tools=[WEATHER],
                                     tool_choice="required", parallel_tool_calls=False, temperature=0,
                                     max_output_tokens=64)
    calls = [item for item in called.output if item.type == "function_call"]
    assert calls and calls[0].name == "get_weather" and called.status == "completed"
    jsonschema.validate(json.loads(calls[0].arguments), WEATHER["parameters"])
    answered = client.responses.create(model=model, tools=[WEATHER], temperature=0, max_output_tokens=48, input=[
        {"role": "user", "content": "What is the weather in Paris?"},
        *[{"type": "function_call", "call_id": c.call_id, "name": c.name, "arguments": c.arguments} for c in calls],
        *[{"type": "function_call_output", "call_id": c.call_id, "output": "18 degrees Celsius, sunny"} for c in calls]],
        tool_choice="none")
    assert answered.output_text.strip() and not [i for i in answered.output if i.type == "function_call"]


def test_a_streamed_function_call_is_rebuilt_by_the_client(served):
    client, model = served
    with client.responses.stream(model=model, input="What is the weather in Paris?", tools=[WEATHER],
                                 tool_choice={"type": "function", "name": "get_weather"}, temperature=0,
                                 max_output_tokens=64) as stream:
        events = list(stream)
        final = stream.get_final_response()
    deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert done and deltas == done[0].arguments
    call = [item for item in final.output if item.type == "function_call"][0]
    assert call.name == "get_weather" and call.arguments == deltas
    jsonschema.validate(json.loads(call.arguments), WEATHER["parameters"])


def test_a_chain_by_previous_response_id_is_the_whole_chat_sent_again(served):
    """The model sees the stored turn: the same prompt (its token count) and, greedy, the same answer
    as the conversation sent whole."""
    client, model = served
    asked = "What is the capital of France?"
    first = client.responses.create(model=model, input=asked, temperature=0, max_output_tokens=24)
    chained = client.responses.create(model=model, input="And of Italy?", previous_response_id=first.id,
                                      temperature=0, max_output_tokens=24)
    whole = client.responses.create(model=model, store=False, temperature=0, max_output_tokens=24, input=[
        {"role": "user", "content": asked}, {"role": "assistant", "content": first.output_text},
        {"role": "user", "content": "And of Italy?"}])
    assert chained.usage.input_tokens == whole.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
    assert chained.output_text == whole.output_text and chained.previous_response_id == first.id
