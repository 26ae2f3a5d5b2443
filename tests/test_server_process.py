"""`ovchat serve` as a process: SIGTERM with streams in flight ends them cleanly and exits 0; a
model that cannot load ends the process with 1 and says why."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from server_harness import children_of, request, wait_for

pytest.importorskip("uvicorn")
pytestmark = pytest.mark.timeout(1200)  # the first may export the model

COUNT = [{"role": "user", "content": "Count from 1 to 500, one number per line."}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(*flags) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("OVCHAT_API_KEY", "OVCHAT_SERVER")}
    process = subprocess.Popen([sys.executable, "-m", "ovchat", "serve", "--port", str(port), "--log-level", "warning",
                                *flags], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    return process, f"http://127.0.0.1:{port}"


def read_stream(url: str, outcome: dict, started: threading.Event) -> None:
    """One streamed request; records its finish reasons and whether it ended with [DONE]."""
    import http.client
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request("POST", "/v1/chat/completions", json.dumps({"messages": COUNT, "max_tokens": 2000,
                                                                       "ignore_eos": True, "stream": True}),
                           {"Content-Type": "application/json"})  # a keyless server refuses other POSTs (415)
        response = connection.getresponse()
        outcome["status"] = response.status
        while line := response.readline():
            if line == b"data: [DONE]\n":
                outcome["done"] = True
            elif line.startswith(b"data: "):
                chunk = json.loads(line[6:])
                for choice in chunk["choices"]:
                    if choice["delta"].get("content"):
                        started.set()
                    if choice["finish_reason"]:
                        outcome["finish_reason"] = choice["finish_reason"]
    except OSError as error:
        outcome["error"] = repr(error)
    finally:
        connection.close()


@pytest.mark.default_model
@pytest.mark.parametrize("layout", [("--in-process",), ()], ids=["engine-in-process", "engine-process"])
def test_sigterm_with_streams_in_flight_ends_them_cleanly_and_exits_0(default_model_dir, layout):
    process, url = serve("-m", str(default_model_dir), "--shutdown-grace", "1", *layout)
    try:
        assert wait_for(lambda: _healthy(url), timeout_s=180), process.stderr.read() if process.poll() else "no health"
        outcomes, threads = [], []
        for _ in range(3):
            outcome, started = {}, threading.Event()
            thread = threading.Thread(target=read_stream, args=(url, outcome, started), daemon=True)
            thread.start()
            outcomes.append(outcome)
            threads.append((thread, started))
        assert all(started.wait(60) for _, started in threads), outcomes
        process.send_signal(signal.SIGTERM)
        sent = time.perf_counter()
        assert process.wait(timeout=60) == 0, process.stderr.read()
        print(f"\nexited 0, {time.perf_counter() - sent:.1f} s after SIGTERM (grace 1 s)")
        assert not children_of(process.pid)  # an engine process ended with it
        for thread, _ in threads:
            thread.join(timeout=10)
        for outcome in outcomes:  # each stream ended cleanly: its finish chunk, then [DONE]
            assert outcome.get("status") == 200 and outcome.get("done"), outcome
            assert outcome.get("finish_reason") in ("stop", "length", "cancelled"), outcome
        assert any(o["finish_reason"] == "cancelled" for o in outcomes), outcomes  # 2000 tokens, EOS ignored: not in 1 s
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_model_that_cannot_load_ends_the_server_with_1_and_says_why(tmp_path):
    process, url = serve("-m", str(tmp_path / "missing-model"))
    try:
        assert process.wait(timeout=120) == 1
        assert "missing-model" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _healthy(url: str) -> bool:
    try:
        return request(url, "GET", "/health", timeout_s=5)[0] == 200
    except OSError:
        return False
