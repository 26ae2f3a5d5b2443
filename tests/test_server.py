"""`ovchat serve` on the real default model (batching mode), through real clients: the official
openai package, plain HTTP, the CLI's stdlib client, and the chat page in headless Chromium.
The model loads once for the module; answers are kept short (max_tokens 16-48)."""

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from server_harness import metric, request, running_server, wait_for

openai = pytest.importorskip("openai")
pytest.importorskip("uvicorn")
pytestmark = [pytest.mark.default_model, pytest.mark.timeout(1200)]  # the first may export the model

QUESTIONS = [  # each answer must hold its own word, also when all 16 run at once
    ("What is the capital of France?", "Paris"), ("What is the capital of Japan?", "Tokyo"),
    ("What is the capital of Germany?", "Berlin"), ("What is the capital of Russia?", "Moscow"),
    ("What is the chemical symbol for water?", "H2O"), ("Who wrote Romeo and Juliet?", "Shakespeare"),
    ("What is the capital of England?", "London"), ("What is the capital of China?", "Beijing"),
    ("What is the capital of Egypt?", "Cairo"), ("Which planet is known as the Red Planet?", "Mars"),
    ("What is the capital of Canada?", "Ottawa"), ("What is the capital of Greece?", "Athens"),
    ("Who developed the theory of relativity?", "Einstein"), ("What is the capital of Austria?", "Vienna"),
    ("What is the capital of Poland?", "Warsaw"), ("What is the capital of Sweden?", "Stockholm"),
]
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
# The seed's plain greedy decoding (a request that leaves these out gets the model's recommended penalties).
PLAIN = dict(temperature=0, frequency_penalty=0, presence_penalty=0, extra_body={"repetition_penalty": 1.0})
LONG_TASK = [{"role": "user", "content": "Count from 1 to 500, one number per line."}]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def served(default_model_dir):
    from ovchat.engine import BatchOptions, Engine

    def load():
        return Engine.load(default_model_dir, batching=BatchOptions(max_sequences=16))
    with running_server(load, max_concurrency=16, max_queue=16) as (url, app):
        model = request(url, "GET", "/v1/models")[1]["data"][0]["id"]
        yield url, model


@pytest.fixture(scope="module")
def client(served):
    return openai.OpenAI(base_url=served[0] + "/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def deterministic_client(default_model_dir):
    """A second server, as `ovchat serve --deterministic` loads it: greedy answers do not depend on the batch."""
    from ovchat.engine import BatchOptions, Engine

    def load():
        return Engine.load(default_model_dir, batching=BatchOptions(max_sequences=16), deterministic=True)
    with running_server(load, max_concurrency=16, max_queue=16) as (url, app):
        model = request(url, "GET", "/v1/models")[1]["data"][0]["id"]
        yield openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120), model


def test_chat_completions_through_the_openai_client(served, client):
    reply = client.chat.completions.create(model=served[1], messages=FRANCE, max_tokens=24, **PLAIN)
    choice = reply.choices[0]
    assert "Paris" in choice.message.content and choice.finish_reason == "stop"
    assert reply.usage.prompt_tokens > 5 and 0 < reply.usage.completion_tokens <= 24
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_a_request_that_leaves_decoding_out_gets_the_models_recommended_decoding(served, client, default_model_dir):
    from ovchat.engine.model import resolve

    recommended = resolve(default_model_dir).generation_defaults  # what `ovchat generate` decodes with
    assert recommended == {"frequency_penalty": 0.5, "presence_penalty": 0.5}
    story = [{"role": "user", "content": "Write a short poem about the sea."}]
    plain = client.chat.completions.create(model=served[1], messages=story, max_tokens=48)
    explicit = client.chat.completions.create(model=served[1], messages=story, max_tokens=48, temperature=0,
                                              frequency_penalty=0.5, presence_penalty=0.5)
    seed_greedy = client.chat.completions.create(model=served[1], messages=story, max_tokens=48, temperature=0,
                                                 frequency_penalty=0, presence_penalty=0, extra_body={"repetition_penalty": 1.0, "top_k": 0})
    assert plain.choices[0].message.content == explicit.choices[0].message.content
    assert plain.choices[0].message.content != seed_greedy.choices[0].message.content  # the penalties changed it


def test_a_stream_holds_the_same_answer_as_the_full_reply(served, client):
    full = client.chat.completions.create(model=served[1], messages=FRANCE, max_tokens=24, **PLAIN)
    chunks = list(client.chat.completions.create(model=served[1], messages=FRANCE, max_tokens=24, **PLAIN,
                                                 stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == full.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage == full.usage


def test_completions_send_the_prompt_raw(served, client):
    reply = client.completions.create(model=served[1], prompt="The capital of France is", max_tokens=8, temperature=0)
    assert "Paris" in reply.choices[0].text and reply.usage.completion_tokens == 8
    assert reply.choices[0].finish_reason == "length"
    pieces = [c.choices[0].text for c in client.completions.create(
        model=served[1], prompt="The capital of France is", max_tokens=8, temperature=0, stream=True) if c.choices]
    assert "".join(pieces) == reply.choices[0].text


def test_n_choices_stop_strings_and_penalties_are_honoured(served, client):
    reply = client.chat.completions.create(model=served[1], messages=FRANCE, max_tokens=16, n=2, temperature=0.8,
                                           seed=1, presence_penalty=0.5, frequency_penalty=0.5)
    assert [c.index for c in reply.choices] == [0, 1] and all(c.message.content for c in reply.choices)
    stopped = client.chat.completions.create(model=served[1], messages=FRANCE, max_tokens=24, temperature=0,
                                             stop=[" Paris"])
    assert "Paris" not in stopped.choices[0].message.content and stopped.choices[0].finish_reason == "stop"


def test_errors_reach_the_openai_client_as_exceptions(served, client):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=FRANCE, max_tokens=4)
    with pytest.raises(openai.BadRequestError) as unsupported:
        client.chat.completions.create(model=served[1], messages=FRANCE, max_tokens=4, extra_body={"guided_json": {}})
    assert unsupported.value.body["param"] == "guided_json"
    with pytest.raises(openai.BadRequestError) as too_long:
        client.completions.create(model=served[1], prompt="word " * 9000, max_tokens=4)
    assert "context" in too_long.value.message


def test_response_format_gives_json_that_parses_and_validates(served, client):
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40},
                                               "country": {"type": "string", "enum": ["France", "Italy", "Spain"]}},
              "required": ["city", "country"], "additionalProperties": False}
    reply = client.chat.completions.create(
        model=served[1], messages=FRANCE, max_tokens=64, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "capital", "schema": schema}})
    answer = json.loads(reply.choices[0].message.content)
    assert set(answer) == {"city", "country"} and answer["country"] in ("France", "Italy", "Spain")
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=served[1], messages=FRANCE, max_tokens=8, response_format={
            "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "minProperties": "two"}}})
    assert bad.value.status_code == 400


def test_json_object_keeps_the_prompts_words_when_the_penalties_are_left_out(served, client):
    # Issue 31: the old defaults (a repetition penalty, which genai applies to the prompt's tokens
    # too) gave {"name": "", "country": {"type": "json", ...} cut at 64 tokens. A shaped answer now
    # gets no penalty it did not ask for (engine/decoding.py).
    ask = [{"role": "user", "content": "Return a JSON object with keys name and country for the city of Paris."}]
    reply = client.chat.completions.create(model=served[1], messages=ask, max_tokens=64, temperature=0,
                                           response_format={"type": "json_object"})
    answer = json.loads(reply.choices[0].message.content)
    assert isinstance(answer, dict) and "Paris" in json.dumps(answer), answer
    assert reply.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("body, status", [
    (b'{"messages": [', 400), ({"messages": FRANCE, "temperature": "hot"}, 400), ({"messages": FRANCE, "model": "x"}, 404),
    ({"messages": []}, 400), ({"messages": [{"role": "user", "content": "word " * 9000}]}, 400),
    ({"messages": [{"role": "user", "content": "x" * (2 << 20)}]}, 413),
])
def test_bad_input_gets_a_4xx_in_the_openai_error_shape(served, body, status):
    got, answer, _ = request(served[0], "POST", "/v1/chat/completions", body)
    assert got == status and set(answer["error"]) == {"message", "type", "param", "code"}


def test_sixteen_concurrent_streams_answer_exactly_as_each_alone(deterministic_client):
    client, model = deterministic_client
    solo = [client.chat.completions.create(model=model, messages=[{"role": "user", "content": q}], max_tokens=24,
                                           **PLAIN).choices[0].message.content for q, _ in QUESTIONS]
    answers, start = [None] * len(QUESTIONS), threading.Barrier(len(QUESTIONS))

    def ask(i):
        start.wait()
        stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": QUESTIONS[i][0]}],
                                                max_tokens=24, stream=True, **PLAIN)
        answers[i] = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(QUESTIONS))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    missing = [(word, answer) for (_, word), answer in zip(QUESTIONS, answers) if not answer or word not in answer]
    assert not missing, f"answers without their own word: {missing}"
    # Deterministic arithmetic (f32, no dynamic quantization, f32 KV cache): a batch of 16 rounds
    # as one request alone, so every streamed answer is the solo one, token for token.
    assert answers == solo


def test_a_client_that_leaves_mid_stream_frees_its_slot_at_once(served, client):
    host, port = served[0].removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    connection.request("POST", "/v1/chat/completions", json.dumps(
        {"messages": LONG_TASK, "max_tokens": 400, "stream": True}), {"Content-Type": "application/json"})
    response = connection.getresponse()
    for _ in range(4):  # the role chunk, then three pieces of text
        while not response.readline().startswith(b"data: "):
            pass
    before = metric(served[0], 'ovchat_generations_finished_total{reason="cancelled"}')
    assert metric(served[0], "ovchat_requests_running") == 1
    left = time.perf_counter()
    connection.close()
    assert wait_for(lambda: metric(served[0], "ovchat_requests_running") == 0, timeout_s=10)
    print(f"\nslot freed {1000 * (time.perf_counter() - left):.0f} ms after the client left")
    assert metric(served[0], 'ovchat_generations_finished_total{reason="cancelled"}') == before + 1
    after = client.chat.completions.create(model=served[1], messages=FRANCE, max_tokens=24, **PLAIN)
    assert "Paris" in after.choices[0].message.content and after.choices[0].finish_reason == "stop"


def test_metrics_count_requests_tokens_and_latency(served):
    request(served[0], "POST", "/v1/chat/completions", {"messages": FRANCE, "max_tokens": 16})
    status, text, headers = request(served[0], "GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    for name in ("ovchat_requests_total", "ovchat_prompt_tokens_total", "ovchat_generation_tokens_total",
                 "ovchat_time_to_first_token_seconds_bucket", "ovchat_time_per_output_token_seconds_bucket",
                 "ovchat_queue_depth", "ovchat_kv_cache_usage_ratio", "ovchat_requests_running"):
        assert name in text, name
    assert metric(served[0], 'ovchat_requests_total{endpoint="chat",status="200"}') >= 1
    assert metric(served[0], "ovchat_generation_tokens_total") >= 1
    assert 0 < metric(served[0], "ovchat_kv_cache_usage_ratio") <= 1


def test_ovchat_generate_with_server_answers_without_loading_a_model(served):
    script = ("import sys; from ovchat.cli.main import main; rc = main(sys.argv[1:]); "
              "assert 'openvino' not in sys.modules, 'imported OpenVINO'; sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", script, "generate", "--server", served[0], "-n", "24",
                           "What is the capital of France?"], capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if k != "OVCHAT_API_KEY"})
    assert done.returncode == 0, done.stderr
    assert "Paris" in done.stdout


def test_ovchat_chat_with_server_keeps_history_resets_and_exits(served):
    script = ("import sys; from ovchat.cli.main import main; rc = main(sys.argv[1:]); "
              "assert 'openvino' not in sys.modules, 'imported OpenVINO'; sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", script, "chat", "--server", served[0], "-n", "24"],
                          input="What is the capital of France?\n/reset\nWhat is the capital of Japan?\n/exit\n",
                          capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if k != "OVCHAT_API_KEY"})
    assert done.returncode == 0, done.stderr
    assert "Paris" in done.stdout and "Tokyo" in done.stdout and "history cleared" in done.stderr


def test_the_chat_page_streams_an_answer_in_headless_chromium(served):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium: apt-get install chromium")
    url = served[0]
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            elsewhere = []
            page.on("request", lambda r: None if r.url.startswith(url) else elsewhere.append(r.url))
            page.goto(url + "/")
            page.wait_for_function(f"document.getElementById('model').textContent.includes({served[1]!r})")
            page.click("summary")
            page.fill("#max-tokens", "32")
            page.fill("#prompt", "What is the capital of France?")
            page.click("#send")
            page.wait_for_function("[...document.querySelectorAll('.assistant')].some(e => e.textContent.includes('Paris'))",
                                   timeout=60_000)
            page.wait_for_function("document.querySelector('.stats').textContent.includes('tokens/s')", timeout=30_000)
            stats = page.text_content(".stats")  # the model's recommended decoding may run to max tokens
            assert "TTFT" in stats and ("stop" in stats or "length" in stats)
            page.fill("#max-tokens", "400")  # a long answer, stopped by the button
            page.fill("#prompt", "Count from 1 to 500, one number per line.")
            page.click("#send")
            page.wait_for_function("document.querySelectorAll('.assistant')[1].textContent.length > 5", timeout=60_000)
            page.click("#stop")
            page.wait_for_function("document.querySelectorAll('.stats')[1].textContent.includes('stopped')",
                                   timeout=30_000)
            assert wait_for(lambda: metric(url, "ovchat_requests_running") == 0, timeout_s=10)
            assert not elsewhere, f"the page fetched from elsewhere: {elsewhere}"
        finally:
            browser.close()
