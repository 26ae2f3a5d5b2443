"""The server's HTTP layer on uvicorn, with a fake engine (no model, seconds): API key, health while
loading, error shapes, admission limits, cancellation, the official openai client's view, and the
CLI client's process (no OpenVINO)."""

import http.client
import json
import os
import subprocess
import sys
import threading

import pytest

from server_harness import FakeEngine, metric, request, running_server, wait_for
from ovchat.engine.stream import Handle

openai = pytest.importorskip("openai")
pytest.importorskip("uvicorn")
pytestmark = pytest.mark.timeout(180)

CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
KEY = {"Authorization": "Bearer s3cret"}


def assert_openai_error(status, body, expected_status, code=None):
    assert status == expected_status, body
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    if code:
        assert body["error"]["code"] == code


@pytest.fixture(scope="module")
def fake_server():
    engine = FakeEngine()
    with running_server(lambda: engine, api_key="s3cret", max_concurrency=2, max_queue=1, max_body_bytes=4096) as (url, _):
        yield url, engine


def test_the_api_key_guards_everything_but_health_and_the_page(fake_server):
    url, _ = fake_server
    for method, path, body in [("GET", "/v1/models", None), ("POST", "/v1/chat/completions", CHAT),
                               ("POST", "/v1/completions", {"prompt": "x"}), ("GET", "/metrics", None)]:
        status, answer, _ = request(url, method, path, body)
        assert_openai_error(status, answer, 401, "invalid_api_key")
        assert request(url, method, path, body, headers={"Authorization": "Bearer wrong"})[0] == 401
    assert request(url, "GET", "/health")[0] == 200
    status, page, _ = request(url, "GET", "/")
    assert status == 200 and "<title>ovchat</title>" in page and "http" not in page.split("<script>")[1].split("fetch(")[0]
    assert request(url, "GET", "/v1/models", headers=KEY)[1]["data"][0]["id"] == "fake-model"


@pytest.mark.parametrize("raw, status, code", [
    (b"{not json", 400, "invalid_json"), (b"[]", 400, "invalid_json"),
    (json.dumps({"messages": []}).encode(), 400, None),
    (json.dumps({**CHAT, "max_tokens": "many"}).encode(), 400, None),
    (json.dumps({**CHAT, "model": "gpt-4o"}).encode(), 404, "model_not_found"),
    (json.dumps({**CHAT, "functions": []}).encode(), 400, "unsupported_parameter"),
    (json.dumps({"messages": [{"role": "user", "content": "word " * 100}]}).encode(), 400, "invalid_prompt"),
    (json.dumps({"messages": [{"role": "user", "content": "x" * 5000}]}).encode(), 413, "request_too_large"),
])
def test_bad_requests_get_the_openai_error_shape(fake_server, raw, status, code):
    assert_openai_error(*request(fake_server[0], "POST", "/v1/chat/completions", raw, headers=KEY)[:2], status, code)


def test_unknown_routes_and_methods_get_the_error_shape_too(fake_server):
    assert_openai_error(*request(fake_server[0], "GET", "/v1/engines", headers=KEY)[:2], 404)
    assert_openai_error(*request(fake_server[0], "GET", "/v1/chat/completions", headers=KEY)[:2], 405)


def test_the_openai_client_reads_answers_streams_and_errors(fake_server):
    url, _ = fake_server
    client = openai.OpenAI(base_url=url + "/v1", api_key="s3cret", max_retries=0, timeout=30)
    reply = client.chat.completions.create(model="fake-model", messages=CHAT["messages"], max_tokens=2)
    assert reply.choices[0].message.content == "Hello," and reply.choices[0].finish_reason == "length"
    assert (reply.usage.completion_tokens, reply.usage.total_tokens) == (2, reply.usage.prompt_tokens + 2)
    chunks = list(client.chat.completions.create(model="fake-model", messages=CHAT["messages"], stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello, world."
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url + "/v1", api_key="nope", max_retries=0).models.list()
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=CHAT["messages"])
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="fake-model", messages=CHAT["messages"], logprobs=True, top_logprobs=5)
    assert bad.value.body["param"] == "top_logprobs"


def test_logprobs_reach_the_openai_client_streamed_and_not(fake_server):
    url, _ = fake_server
    client = openai.OpenAI(base_url=url + "/v1", api_key="s3cret", max_retries=0, timeout=30)
    expected = [("Hello", -0.1), (",", -0.2), (" world", -0.3), (".", -0.4)]  # the fake's tokens
    reply = client.chat.completions.create(model="fake-model", messages=CHAT["messages"], logprobs=True, top_logprobs=1)
    content = reply.choices[0].logprobs.content
    assert [(t.token, t.logprob) for t in content] == expected
    assert all(t.top_logprobs[0].token == t.token and t.bytes == list(t.token.encode()) for t in content)
    chunks = list(client.chat.completions.create(model="fake-model", messages=CHAT["messages"], logprobs=True,
                                                 stream=True))
    streamed = [t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert [(t.token, t.logprob, t.top_logprobs) for t in streamed] == [(t, lp, []) for t, lp in expected]
    assert client.chat.completions.create(model="fake-model", messages=CHAT["messages"]).choices[0].logprobs is None
    legacy = client.completions.create(model="fake-model", prompt="hi", logprobs=0, max_tokens=3).choices[0].logprobs
    assert legacy.tokens == ["Hello", ",", " world"] and legacy.token_logprobs == [-0.1, -0.2, -0.3]
    assert legacy.text_offset == [0, 5, 6] and legacy.top_logprobs[2] == {" world": -0.3}
    pieces = [c.choices[0].logprobs for c in client.completions.create(
        model="fake-model", prompt="hi", logprobs=0, max_tokens=3, stream=True) if c.choices[0].logprobs]
    assert [p.text_offset[0] for p in pieces] == [0, 5, 6]


def test_logprobs_ride_on_streamed_tool_call_chunks_too(fake_server):
    url, _ = fake_server
    client = openai.OpenAI(base_url=url + "/v1", api_key="s3cret", max_retries=0, timeout=30)
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    chunks = list(client.chat.completions.create(model="fake-model", messages=CHAT["messages"], tools=[tool],
                                                 logprobs=True, stream=True))
    logprobs = [t.logprob for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert logprobs == [-0.1, -0.2, -0.3, -0.4, -0.5]  # every token of the (fake) call, once
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_a_request_without_decoding_fields_decodes_as_the_models_recommendation():
    engine = FakeEngine(generation_defaults={"repetition_penalty": 1.1, "frequency_penalty": 0.2})
    with running_server(lambda: engine) as (url, _):
        for body in ({}, {"top_k": 0, "top_p": 1}, {"temperature": 0.5, "frequency_penalty": 0}):
            assert request(url, "POST", "/v1/chat/completions", {**CHAT, **body})[0] == 200
        plain, off, hot = engine.seen_options
        assert plain.greedy and (plain.repetition_penalty, plain.frequency_penalty) == (1.1, 0.2)
        assert off.greedy and (off.top_k, off.top_p) == (0, 1.0)
        assert not hot.greedy and (hot.temperature, hot.frequency_penalty, hot.repetition_penalty) == (0.5, 0.0, 1.1)


def test_a_full_queue_is_refused_with_retry_after_and_a_client_that_leaves_frees_its_slot():
    engine = FakeEngine(gate=threading.Event())
    with running_server(lambda: engine, max_concurrency=1, max_queue=1) as (url, _):
        holder = _open_stream(url)             # takes the one slot, held at its first token by the gate
        assert wait_for(lambda: engine.active == 1)
        waiting = threading.Thread(target=request, args=(url, "POST", "/v1/chat/completions", CHAT), daemon=True)
        waiting.start()                         # waits for the slot
        assert wait_for(lambda: metric(url, "ovchat_queue_depth") == 1)
        status, body, headers = request(url, "POST", "/v1/chat/completions", CHAT)
        assert_openai_error(status, body, 429, "queue_full")
        assert int(headers["Retry-After"]) >= 1
        holder.close()                          # the client leaves mid-stream
        assert wait_for(lambda: engine.cancelled == 1, timeout_s=5)
        engine.gate.set()
        waiting.join(timeout=10)                # the waiting request got the freed slot and finished
        assert not waiting.is_alive()
        assert metric(url, 'ovchat_generations_finished_total{reason="cancelled"}') == 1
        assert metric(url, 'ovchat_generations_finished_total{reason="stop"}') == 1


def test_health_says_loading_until_the_engine_is_ready_and_api_calls_get_503():
    loaded = threading.Event()

    def slow_load():
        loaded.wait(30)
        return FakeEngine()
    with running_server(slow_load, wait_ready=False) as (url, _):
        status, body, headers = request(url, "GET", "/health")
        assert (status, body["status"]) == (503, "loading") and headers["Retry-After"]
        assert_openai_error(*request(url, "POST", "/v1/chat/completions", CHAT)[:2], 503, "loading")
        loaded.set()
        assert wait_for(lambda: request(url, "GET", "/health")[0] == 200)
        assert request(url, "POST", "/v1/chat/completions", CHAT)[0] == 200


def test_a_model_that_fails_to_load_is_reported_not_hidden():
    def broken():
        raise RuntimeError("no such model")
    with running_server(broken, wait_ready=False) as (url, _):
        assert wait_for(lambda: request(url, "GET", "/health")[1].get("status") == "load_failed")
        status, body, _ = request(url, "POST", "/v1/chat/completions", CHAT)
        assert_openai_error(status, body, 503, "load_failed")
        assert "no such model" in body["error"]["message"]


def test_an_engine_process_that_dies_fails_its_requests_with_503_and_is_restarted():
    from ovchat.engine.process import EngineProcess
    from test_process import _fake  # a fake engine whose process exits on the word "die"

    with running_server(lambda: EngineProcess(_fake, start_timeout_s=60)) as (url, app):
        assert request(url, "POST", "/v1/chat/completions", CHAT)[1]["choices"][0]["message"]["content"] == "hi "
        status, body, headers = request(url, "POST", "/v1/chat/completions",
                                        {"messages": [{"role": "user", "content": "a die"}]})
        assert_openai_error(status, body, 503, "engine_stopped")
        assert "engine process stopped (exit code 3)" in body["error"]["message"] and int(headers["Retry-After"]) >= 1
        status, body, _ = request(url, "GET", "/health")
        assert (status, body["status"]) in ((503, "engine_stopped"), (200, "ok"))  # (200: restarted already)
        assert wait_for(lambda: request(url, "GET", "/health")[0] == 200, timeout_s=60)
        assert metric(url, "ovchat_engine_restarts") == 1
        assert request(url, "POST", "/v1/chat/completions", CHAT)[1]["choices"][0]["message"]["content"] == "hi "
        lines = _stream_lines(url, {"messages": [{"role": "user", "content": "one two die"}], "stream": True})
        events = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
        assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events if "choices" in e) == "one two "
        assert events[-1]["error"]["code"] == "engine_stopped" and lines[-1] == "data: [DONE]"
        assert wait_for(lambda: request(url, "GET", "/health")[0] == 200, timeout_s=60)
        assert metric(url, "ovchat_engine_restarts") == 2


def test_finished_cancelled_and_refused_requests_leave_no_run_alive():
    import gc
    from ovchat.server.serving import Run

    engine = FakeEngine(pieces=tuple(f"w{i} " for i in range(200)))
    with running_server(lambda: engine, max_concurrency=2) as (url, app):
        assert request(url, "POST", "/v1/chat/completions", CHAT)[0] == 200
        holder = _open_stream(url)
        holder.close()  # the client leaves mid-stream
        too_long = {"messages": [{"role": "user", "content": "word " * 100}]}
        assert request(url, "POST", "/v1/chat/completions", too_long)[0] == 400
        assert request(url, "POST", "/v1/chat/completions", {**CHAT, "stream": True})[0] == 200
        serving = app.state.ovchat.serving
        assert wait_for(lambda: not serving._runs and engine.active == 0)

        def alive():
            gc.collect()
            return [obj for obj in gc.get_objects() if isinstance(obj, Run)]
        assert wait_for(lambda: not alive(), timeout_s=10), alive()


def test_requests_start_without_waiting_and_one_whose_client_left_while_it_started_is_cancelled():
    """The event loop starts every request itself (engine.start returns at once: no thread of the
    server waits on a start); a request whose client leaves while the engine prepares it does
    not run on unseen."""
    threads, preparing, release = [], threading.Event(), threading.Event()

    class SlowToStart(FakeEngine):
        def start(self, prompt, options, sink, handle=None):
            threads.append(threading.current_thread())
            handle = handle or Handle()
            if "slow" not in json.dumps(prompt):
                return super().start(prompt, options, sink, handle)

            def prepare_slowly():
                preparing.set()
                release.wait(10)
                FakeEngine.start(self, prompt, options, sink, handle)
            threading.Thread(target=prepare_slowly, daemon=True).start()
            return handle

    engine = SlowToStart(pieces=tuple(f"w{i} " for i in range(200)))
    with running_server(lambda: engine, max_concurrency=8) as (url, app):
        clients = [threading.Thread(target=request, args=(url, "POST", "/v1/chat/completions", CHAT)) for _ in range(8)]
        [client.start() for client in clients]
        [client.join(timeout=30) for client in clients]
        assert len(threads) == 8 and len(set(threads)) == 1 and threads[0].name == "test-uvicorn"  # the loop's

        host, port = url.removeprefix("http://").split(":")
        leaving = http.client.HTTPConnection(host, int(port), timeout=30)
        slow = {"messages": [{"role": "user", "content": "slow"}], "max_tokens": 100, "stream": True}
        leaving.request("POST", "/v1/chat/completions", json.dumps(slow), {"Content-Type": "application/json"})
        assert preparing.wait(10)
        leaving.close()                          # gone while the engine prepares its prompt
        serving = app.state.ovchat.serving
        assert wait_for(lambda: not serving._runs)  # the server has given up the request...
        release.set()                            # ...before the engine has taken it
        assert wait_for(lambda: engine.cancelled == 1 and engine.active == 0, timeout_s=10)


def _stream_lines(url: str, body: dict) -> list[str]:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 200
        return [line.decode().rstrip("\n") for line in response.read().splitlines(keepends=True) if line.strip()]
    finally:
        connection.close()


def test_the_cli_client_streams_from_the_server_without_importing_openvino(fake_server):
    url, _ = fake_server
    script = ("import sys; from ovchat.cli.main import main; rc = main(sys.argv[1:]); "
              "assert 'openvino' not in sys.modules and 'openvino_genai' not in sys.modules, 'imported OpenVINO'; "
              "sys.exit(rc)")
    env = {**os.environ, "OVCHAT_SERVER": url, "OVCHAT_API_KEY": "s3cret"}
    done = subprocess.run([sys.executable, "-c", script, "generate", "hi"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Hello, world.\n"
    as_json = subprocess.run([sys.executable, "-c", script, "generate", "--json", "-n", "2", "--server", url, "hi"],
                             env=env, capture_output=True, text=True, timeout=60)
    answer = json.loads(as_json.stdout)
    assert (answer["text"], answer["output_tokens"], answer["finish_reason"]) == ("Hello,", 2, "length")
    refused = subprocess.run([sys.executable, "-c", script, "generate", "hi"], capture_output=True, text=True,
                             timeout=60, env={**env, "OVCHAT_API_KEY": "wrong"})
    assert refused.returncode == 1 and "401" in refused.stderr and "API key" in refused.stderr


@pytest.mark.parametrize("imports, banned", [
    ("ovchat.server.app, ovchat.server.launch, ovchat.cli.serve, ovchat.engine.engine", ("torch", "transformers", "optimum")),
    ("ovchat.engine.engine, ovchat.engine.batch", ("starlette", "uvicorn", "prometheus_client", "anyio")),
])
def test_the_server_process_has_no_torch_and_the_engine_no_web_framework(imports, banned):
    script = (f"import sys, {imports}; found = sorted(m for m in sys.modules if m.split('.')[0] in {banned!r}); "
              "assert not found, found")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def _open_stream(url: str) -> http.client.HTTPConnection:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request("POST", "/v1/chat/completions", json.dumps({**CHAT, "stream": True}),
                       {"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 200
    assert response.readline().startswith(b"data: ")  # the role chunk: the request is running
    return connection
