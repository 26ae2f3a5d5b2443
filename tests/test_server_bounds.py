"""The server's bounds, with a fake engine (no model, seconds): the max_tokens ceiling, the
per-request deadline, the 413 every common client sees, the serve flags that set them (the
KV-cache cap included), and the structured-output checker's bounded memory."""

import json
import threading
import urllib.error
import urllib.request

import pytest

from server_harness import FakeEngine, request, running_server, wait_for

pytest.importorskip("uvicorn")
pytestmark = pytest.mark.timeout(120)

CHAT = {"messages": [{"role": "user", "content": "hi"}]}
# 8 MiB: without draining, urllib saw "connection reset" 5 times in 5 at this size (4 in 5 at 2 MiB).
BIG = json.dumps({"messages": [{"role": "user", "content": "x" * (8 << 20)}]}).encode()


def test_max_tokens_above_the_ceiling_is_clamped_and_ends_with_length():
    engine = FakeEngine()
    with running_server(lambda: engine, max_tokens=3) as (url, _):
        status, body, _ = request(url, "POST", "/v1/chat/completions", {**CHAT, "max_tokens": 100000})
        assert status == 200 and body["choices"][0]["finish_reason"] == "length"
        assert body["usage"]["completion_tokens"] == 3 and engine.seen_options[-1].max_new_tokens == 3
        request(url, "POST", "/v1/chat/completions", CHAT)  # left out: the ceiling
        request(url, "POST", "/v1/chat/completions", {**CHAT, "max_tokens": 2})  # below it: as asked
        assert [o.max_new_tokens for o in engine.seen_options[1:]] == [3, 2]


def test_the_ceiling_is_the_context_when_none_is_set():
    engine = FakeEngine(context_length=64)
    with running_server(lambda: engine, max_tokens=None) as (url, _):
        request(url, "POST", "/v1/chat/completions", {**CHAT, "max_tokens": 5000})
        assert engine.seen_options[-1].max_new_tokens == 64


def test_a_request_past_its_deadline_ends_with_length_and_the_text_so_far():
    engine = FakeEngine(gate=threading.Event())  # every generation stalls at its first token
    with running_server(lambda: engine, request_timeout_s=1.0) as (url, _):
        status, body, _ = request(url, "POST", "/v1/chat/completions", CHAT, timeout_s=30)
        assert status == 200 and body["choices"][0]["finish_reason"] == "length"
        status, text, _ = request(url, "POST", "/v1/chat/completions", {**CHAT, "stream": True}, timeout_s=30)
        events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
        assert status == 200 and events[-1]["choices"][0]["finish_reason"] == "length" and text.endswith("[DONE]\n\n")
        assert wait_for(lambda: engine.active == 0, timeout_s=5)  # the generations were cancelled in the engine
        assert engine.cancelled == 2


def test_a_request_that_waits_for_a_slot_past_its_deadline_gets_a_503():
    engine = FakeEngine(gate=threading.Event(), honours_cancel_at_gate=False)  # the slot's holder stays past its own deadline
    with running_server(lambda: engine, request_timeout_s=1.5, max_concurrency=1, max_queue=4) as (url, _):
        holder = threading.Thread(target=request, args=(url, "POST", "/v1/chat/completions", CHAT), daemon=True)
        holder.start()
        assert wait_for(lambda: engine.active == 1)
        status, body, headers = request(url, "POST", "/v1/chat/completions", CHAT, timeout_s=30)
        assert status == 503 and body["error"]["code"] == "timeout" and headers["Retry-After"]
        engine.gate.set()
        holder.join(timeout=10)
        assert not holder.is_alive()


@pytest.fixture(scope="module")
def small_body_server():
    with running_server(lambda: FakeEngine(), max_body_bytes=4096) as (url, _):
        yield url


def test_urllib_sees_the_413(small_body_server):
    for _ in range(3):
        post = urllib.request.Request(small_body_server + "/v1/chat/completions", data=BIG,
                                      headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(post, timeout=30)
        assert caught.value.code == 413
        assert json.loads(caught.value.read())["error"]["code"] == "request_too_large"


def test_requests_sees_the_413(small_body_server):
    requests = pytest.importorskip("requests")
    answer = requests.post(small_body_server + "/v1/chat/completions", data=BIG,
                           headers={"Content-Type": "application/json"}, timeout=30)
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "request_too_large"


def test_httpx_and_the_openai_client_see_the_413(small_body_server):
    httpx = pytest.importorskip("httpx")
    openai = pytest.importorskip("openai")
    answer = httpx.post(small_body_server + "/v1/chat/completions", content=BIG,
                        headers={"Content-Type": "application/json"}, timeout=30)
    assert answer.status_code == 413
    client = openai.OpenAI(base_url=small_body_server + "/v1", api_key="unused", max_retries=0, timeout=30)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "x" * (8 << 20)}])
    assert caught.value.status_code == 413


def test_other_early_answers_reach_clients_that_send_big_bodies_too():
    with running_server(lambda: FakeEngine(), api_key="s3cret", max_body_bytes=4096) as (url, _):
        post = urllib.request.Request(url + "/v1/chat/completions", data=BIG, headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(post, timeout=30)
        assert caught.value.code == 401  # answered before the body was read; the client still sees it
        status, body, _ = request(url, "POST", "/v1/chat/completions", CHAT, headers={"Authorization": "Bearer s3cret"})
        assert status == 200  # and the server goes on


def test_serve_flags_set_the_bounds():
    from ovchat.cli.main import build_parser
    from ovchat.cli.serve import serve_settings

    settings = serve_settings(build_parser().parse_args(
        ["serve", "--max-tokens", "512", "--request-timeout", "30", "--kv-cache-gb", "2",
         "--allowed-hosts", "a.example, .corp.example", "--allowed-origins", "https://ui"]))
    assert (settings.max_tokens, settings.request_timeout_s, settings.kv_cache_gb) == (512, 30.0, 2)
    assert settings.batch_options().to_scheduler_config().cache_size == 2
    assert settings.allowed_hosts == ("a.example", ".corp.example") and settings.allowed_origins == ("https://ui",)
    defaults = serve_settings(build_parser().parse_args(["serve"]))
    assert (defaults.max_tokens, defaults.request_timeout_s, defaults.kv_cache_gb) == (2048, 600.0, 0)
    unbounded = serve_settings(build_parser().parse_args(["serve", "--max-tokens", "0", "--request-timeout", "0"]))
    assert (unbounded.max_tokens, unbounded.request_timeout_s) == (None, None)


def test_the_structure_checker_admits_a_bounded_number_of_distinct_constraints(monkeypatch):
    from ovchat.engine import GenerationOptions, OptionsError
    from ovchat.engine.structured import StructureChecker

    checker = StructureChecker(tokenizer=None, max_constraints=3, max_bytes=40)
    compiled = []
    monkeypatch.setattr(checker, "_compile", lambda kind, text: compiled.append(text))
    regexes = [f"[a-z]{{{i}}}" for i in range(3)]  # 8 bytes each
    for regex in regexes * 2:
        checker.check(GenerationOptions(regex=regex))
    assert compiled == regexes and checker.cached == (3, 24)  # each compiled once, then known
    with pytest.raises(OptionsError, match="compiled 3 distinct structured-output constraints"):
        checker.check(GenerationOptions(regex="[0-9]+"))  # a 4th: refused, and not compiled
    checker.check(GenerationOptions(regex=regexes[0]))  # known ones still work
    roomy = StructureChecker(tokenizer=None, max_constraints=100, max_bytes=40)
    monkeypatch.setattr(roomy, "_compile", lambda kind, text: None)
    roomy.check(GenerationOptions(regex="x" * 30))
    with pytest.raises(OptionsError, match="30 bytes"):
        roomy.check(GenerationOptions(regex="y" * 11))  # over the bytes bound
    assert roomy.cached == (1, 30)


def test_a_capped_kv_cache_loads_and_answers(default_model_dir):
    from ovchat.engine import BatchOptions, Engine, GenerationOptions

    engine = Engine.load(default_model_dir, batching=BatchOptions(max_sequences=4, kv_cache_gb=1))  # --kv-cache-gb 1
    try:
        result = engine.generate("What is the capital of France?", GenerationOptions(max_new_tokens=8, ignore_eos=True))
        assert result.output_tokens == 8 and engine.stats().kv_cache_usage is not None
    finally:
        engine.close()
