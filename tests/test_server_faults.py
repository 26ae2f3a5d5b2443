"""`ovchat serve` under faults, on the real default model with its engine in a child process
(issue 21 point 8; 127.0.0.1 only, bounded): 32 streams, some hanging up mid-answer, malformed
and oversized requests mixed in, and the engine process killed once in the middle. Afterwards
every request has a correct answer or a clear error, the server answers a new request, and no
thread or process of ours is left behind."""

import http.client
import json
import os
import random
import signal
import threading
import time

import pytest

from server_harness import children_of, metric, request, running_server, wait_for

pytest.importorskip("uvicorn")
pytestmark = [pytest.mark.default_model, pytest.mark.timeout(1200)]  # the first may export the model

QUESTIONS = [
    ("What is the capital of France?", "Paris"), ("What is the capital of Japan?", "Tokyo"),
    ("What is the capital of Germany?", "Berlin"), ("Who wrote Romeo and Juliet?", "Shakespeare"),
    ("What is the capital of England?", "London"), ("Which planet is known as the Red Planet?", "Mars"),
    ("What is the capital of Greece?", "Athens"), ("What is the capital of Austria?", "Vienna"),
]
STREAMS = 32
BODY_LIMIT = 64 * 1024
TIMEOUT_S = 300


def stream_chat_retrying(url: str, question: str, hang_up_after: int | None) -> dict:
    """As a well-behaved client: a 503 before anything streamed is retried after its Retry-After
    (the engine is restarting), for up to a minute."""
    deadline = time.monotonic() + 60
    retries = 0
    while True:
        outcome = stream_chat(url, question, hang_up_after)
        if outcome.get("status") != 503 or time.monotonic() > deadline:
            return {**outcome, "retries": retries}
        retries += 1
        time.sleep(int(outcome["headers"]["Retry-After"]))


def stream_chat(url: str, question: str, hang_up_after: int | None) -> dict:
    """One streamed chat request; what came back: status, text, finish reason, an error event,
    [DONE], or that we hung up."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT_S)
    outcome = {"text": "", "chunks": 0}
    try:
        body = {"messages": [{"role": "user", "content": question}], "max_tokens": 24, "stream": True}
        connection.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        outcome["status"] = response.status
        if response.status != 200:
            outcome["body"], outcome["headers"] = json.loads(response.read()), response.headers
            return outcome
        while line := response.readline():
            if line == b"data: [DONE]\n":
                outcome["done"] = True
            elif line.startswith(b"data: "):
                event = json.loads(line[6:])
                if "error" in event:
                    outcome["error"] = event["error"]
                    continue
                for choice in event["choices"]:
                    if choice["delta"].get("content"):
                        outcome["text"] += choice["delta"]["content"]
                        outcome["chunks"] += 1
                    outcome["finish_reason"] = choice["finish_reason"] or outcome.get("finish_reason")
                if hang_up_after is not None and outcome["chunks"] >= hang_up_after:
                    outcome["hung_up"] = True
                    return outcome
    except OSError as error:
        outcome["exception"] = repr(error)
    finally:
        connection.close()
    return outcome


def post_raw(url: str, raw: bytes | None, path: str = "/v1/chat/completions", method: str = "POST") -> dict:
    try:
        status, body, _ = request(url, method, path, raw, timeout_s=TIMEOUT_S)
        return {"status": status, "body": body}
    except OSError as error:
        return {"exception": repr(error)}


def ours() -> tuple[set, set]:
    """This process's ovchat threads and its child processes (not zombies)."""
    threads = {t.name for t in threading.enumerate() if t.name.startswith("ovchat")}
    return threads, children_of(os.getpid())


def test_32_streams_with_hang_ups_bad_requests_and_a_killed_engine(default_model_dir):
    from ovchat.engine import BatchOptions
    from ovchat.engine.process import EngineProcess

    threads_before, children_before = ours()
    loaded = {}

    def load():
        loaded["engine"] = EngineProcess.load(default_model_dir, batching=BatchOptions(max_sequences=16))
        return loaded["engine"]

    rng = random.Random(21)
    plan = [("stream", *QUESTIONS[i % len(QUESTIONS)], rng.choice([None, None, None, rng.randint(1, 6)]))
            for i in range(STREAMS)]
    plan += [("raw", b"{not json", 400, "invalid_json")] * 3
    plan += [("raw", json.dumps({"messages": [{"role": "user", "content": "hi"}], "functions": []}).encode(),
              400, "unsupported_parameter")] * 3
    plan += [("raw", json.dumps({"messages": [{"role": "user", "content": "x" * (BODY_LIMIT * 2)}]}).encode(),
              413, "request_too_large")] * 3
    # The Anthropic route: its errors carry a type, not a code (no max_tokens, not JSON, an image block).
    plan += [("messages", json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode(),
              400, "invalid_request_error")] * 2
    plan += [("messages", b"{not json", 400, "invalid_request_error")] * 2
    plan += [("messages", json.dumps({"max_tokens": 8, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "url", "url": "http://127.0.0.1/x.png"}}]}]}).encode(),
              400, "invalid_request_error")] * 2
    # Stored responses (issue 31): bad fields and unknown ids, a 400 or 404 naming them, never a 500.
    plan += [("raw", json.dumps({"input": "hi", "store": "yes"}).encode(), 400, None, "/v1/responses", "POST"),
             ("raw", json.dumps({"input": "hi", "previous_response_id": "resp_none"}).encode(), 404,
              "response_not_found", "/v1/responses", "POST"),
             ("raw", None, 400, None, "/v1/responses/resp_none/input_items?limit=0", "GET"),
             ("raw", None, 400, "unsupported_parameter", "/v1/responses/resp_none?stream=true", "GET"),
             ("raw", None, 404, "response_not_found", "/v1/responses/resp_none", "DELETE")]
    rng.shuffle(plan)

    with running_server(load, startup_timeout_s=TIMEOUT_S * 2, max_concurrency=16, max_queue=64,
                        max_body_bytes=BODY_LIMIT) as (url, app):
        engine = loaded["engine"]
        first_child = engine._child.pid
        outcomes = [None] * len(plan)

        def run(i, item):
            if item[0] == "stream":
                outcomes[i] = stream_chat_retrying(url, item[1], item[3])
            elif item[0] == "messages":
                outcomes[i] = post_raw(url, item[1], "/v1/messages")
            else:
                outcomes[i] = post_raw(url, item[1], *item[4:])
        workers = [threading.Thread(target=run, args=(i, item), daemon=True) for i, item in enumerate(plan)]
        half = len(workers) // 2
        for worker in workers[:half]:
            worker.start()
            time.sleep(0.05)
        # The kill, in the middle: some answers are done, a batch is running, the second half is still to come.
        assert wait_for(lambda: sum(o is not None for o in outcomes) >= 6 and metric(url, "ovchat_requests_running") >= 4,
                        timeout_s=TIMEOUT_S)
        os.kill(first_child, signal.SIGKILL)
        killed_at = time.monotonic()
        for worker in workers[half:]:
            worker.start()
            time.sleep(0.05)
        for worker in workers:
            worker.join(TIMEOUT_S)
        assert not any(worker.is_alive() for worker in workers)
        assert wait_for(lambda: request(url, "GET", "/health")[0] == 200, timeout_s=TIMEOUT_S)
        print(f"\nengine back {time.monotonic() - killed_at:.1f} s after the kill")

        answered = stopped = hung_up = retried = 0
        for item, outcome in zip(plan, outcomes):
            if item[0] == "messages":  # never a 500: a 400 in Anthropic's shape (503 while the engine restarts)
                assert "exception" not in outcome and outcome["body"]["type"] == "error", outcome
                got = outcome["status"], outcome["body"]["error"]["type"]
                assert got in ((item[2], item[3]), (503, "overloaded_error")), outcome
                continue
            if item[0] == "raw":
                _, _, status, code = item[:4]
                if "exception" in outcome:  # a client still sending its oversized body when the 413 comes
                    # may see the connection reset first (issue 21 point 4, fixed on the hardening branch)
                    assert status == 413 and "Connection reset" in outcome["exception"], outcome
                else:  # (while the engine restarts, every API call is a 503 first)
                    got = outcome["status"], outcome["body"]["error"]["code"]
                    assert got in ((status, code), (503, "engine_stopped")), outcome
                continue
            _, question, word, hang_up_after = item
            assert "exception" not in outcome, (question, outcome)
            retried += outcome["retries"]
            if outcome.get("hung_up"):
                hung_up += 1
            elif "error" in outcome:  # in flight when the engine died: an error event, then [DONE]
                assert outcome["error"]["code"] == "engine_stopped", outcome
                assert "engine process stopped" in outcome["error"]["message"] and outcome.get("done"), outcome
                stopped += 1
            else:
                assert outcome["status"] == 200 and outcome.get("done"), outcome
                assert outcome["finish_reason"] in ("stop", "length") and word in outcome["text"], (question, outcome)
                answered += 1
        print(f"{answered} answered, {stopped} ended by the kill, {hung_up} hung up; {retried} retries of a 503")
        assert stopped >= 1 and answered >= STREAMS // 4  # the kill hit requests in flight; the others were answered
        assert metric(url, "ovchat_engine_restarts") == 1 and engine._child.pid != first_child
        reply = request(url, "POST", "/v1/chat/completions",
                        {"messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 24})
        assert reply[0] == 200 and "Paris" in reply[1]["choices"][0]["message"]["content"]
        assert metric(url, "ovchat_requests_running") == 0

    # Left behind: nothing (the engine process and its threads end with the server).
    def left_behind():
        threads, children = ours()
        return threads - threads_before, children - children_before
    assert wait_for(lambda: left_behind() == (set(), set()), timeout_s=30), left_behind()
