"""Several tiny models behind one server, each in its own engine process (server/models.py with
engine/process.py): two and three models, at most one loaded with requests alternating, SIGKILL
of one model's engine process while another streams, and `ovchat serve --config` as a process
with `ovchat ps` reading it."""

import json
import os
import signal
import subprocess
import sys
import threading

import pytest

from server_harness import children_of, request, running_server, wait_for

pytest.importorskip("uvicorn")
pytestmark = pytest.mark.timeout(900)

HELLO = [{"role": "user", "content": "Hello, world!"}]


def load_model_process(settings):
    from ovchat.engine import EngineProcess
    from ovchat.server.launch import _load_model

    return lambda model: _load_model(EngineProcess.load, settings, model)


def serve_models(models, **config):
    from ovchat.server.settings import ServerSettings

    settings = ServerSettings(models=models, max_concurrency=4, engine_options={"warmup": False}, **config)
    return running_server(load_model_process(settings), models=models, max_concurrency=4,
                          engine_options={"warmup": False}, **config)


def three(tiny_phi3_dir, tiny_phi3_end_dir, models_max=0):
    from ovchat.server.model_settings import ModelSettings, ModelsSettings

    return ModelsSettings((ModelSettings("a", str(tiny_phi3_dir)), ModelSettings("b", str(tiny_phi3_dir)),
                           ModelSettings("end", str(tiny_phi3_end_dir))), models_max=models_max)


def chat(url, model, **extra):
    return request(url, "POST", "/v1/chat/completions",
                   {"model": model, "messages": HELLO, "max_tokens": 8, "temperature": 0, **extra}, timeout_s=120)


def cards(url) -> dict:
    return {card["id"]: card for card in request(url, "GET", "/v1/models")[1]["data"]}


def read_stream(url, model, outcome: dict, started: threading.Event) -> None:
    import http.client
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=120)
    try:
        connection.request("POST", "/v1/chat/completions", json.dumps(
            {"model": model, "messages": HELLO, "max_tokens": 1500, "ignore_eos": True, "stream": True}),
            {"Content-Type": "application/json"})
        response = connection.getresponse()
        outcome["status"] = response.status
        while line := response.readline():
            if line == b"data: [DONE]\n":
                outcome["done"] = True
            elif line.startswith(b"data: "):
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    outcome["error"] = chunk["error"]["code"]
                for choice in chunk.get("choices", []):
                    if choice["delta"].get("content"):
                        outcome["pieces"] = outcome.get("pieces", 0) + 1
                        started.set()
                    if choice["finish_reason"]:
                        outcome["finish_reason"] = choice["finish_reason"]
    finally:
        connection.close()


def engine_processes(before: set) -> set:
    """This process's children started since `before` was taken (engine processes of this test)."""
    return children_of(os.getpid()) - before


def test_three_models_each_in_an_engine_process_of_its_own(tiny_phi3_dir, tiny_phi3_end_dir):
    before = children_of(os.getpid())
    with serve_models(three(tiny_phi3_dir, tiny_phi3_end_dir)) as (url, _):
        assert {name: card["state"] for name, card in cards(url).items()} == \
            {"a": "unloaded", "b": "unloaded", "end": "unloaded"}
        assert engine_processes(before) == set()
        answers = {}
        for name in ("a", "b", "end"):
            status, body, _ = chat(url, name)
            assert status == 200 and body["model"] == name, body
            answers[name] = body["choices"][0]
        # a and b are the same files: the same greedy answer; `end` answers <|end|> at once.
        assert answers["a"]["message"]["content"] == answers["b"]["message"]["content"] != ""
        assert answers["end"]["message"]["content"] == "" and answers["end"]["finish_reason"] == "stop"
        listed = cards(url)
        assert all(card["memory_bytes"] > 0 and card["size_bytes"] > 0 for card in listed.values())
        assert len(engine_processes(before)) == 3


def test_at_most_one_loaded_alternating_requests_all_answered(tiny_phi3_dir, tiny_phi3_end_dir):
    before = children_of(os.getpid())
    with serve_models(three(tiny_phi3_dir, tiny_phi3_end_dir, models_max=1)) as (url, _):
        for name in ("a", "end", "a", "end", "b"):
            status, body, _ = chat(url, name)
            assert status == 200 and body["model"] == name, body
            loaded = [n for n, card in cards(url).items() if card["state"] in ("loaded", "loading")]
            assert loaded == [name]
        assert wait_for(lambda: len(engine_processes(before)) == 1)
        assert cards(url)["a"]["loads"] == 2 and cards(url)["end"]["evictions"] == 2


def test_sigkill_of_one_models_engine_fails_only_its_requests(tiny_phi3_dir, tiny_phi3_end_dir):
    with serve_models(three(tiny_phi3_dir, tiny_phi3_end_dir)) as (url, app):
        assert chat(url, "a")[0] == 200 and chat(url, "b")[0] == 200
        pool = app.state.ovchat.pool
        a_pid = pool.models["a"].pid()
        outcomes = {}
        threads = []
        for name in ("a", "b"):
            outcome, started = {}, threading.Event()
            outcomes[name] = outcome
            thread = threading.Thread(target=read_stream, args=(url, name, outcome, started), daemon=True)
            thread.start()
            threads.append((thread, started))
        assert all(started.wait(60) for _, started in threads), outcomes
        assert "done" not in outcomes["b"]  # b is mid-stream when a's engine dies
        os.kill(a_pid, signal.SIGKILL)
        for thread, _ in threads:
            thread.join(120)
        assert outcomes["b"]["done"] and outcomes["b"]["finish_reason"] == "length" and "error" not in outcomes["b"]
        assert outcomes["a"]["error"] == "engine_stopped" and outcomes["a"]["done"]
        # a's engine is restarted (engine/process.py) and answers again.
        assert wait_for(lambda: chat(url, "a")[0] == 200, timeout_s=120, every_s=0.5)
        assert pool.models["a"].pid() != a_pid and pool.models["a"].serving.engine.restarts == 1


def test_serve_a_settings_file_and_ps_reads_it(tmp_path, tiny_phi3_dir, tiny_phi3_end_dir):
    from test_server_process import free_port

    settings = tmp_path / "models.toml"
    settings.write_text(f"""
[server]
models_max = 2
idle_unload = "10m"
default = "end"

[models.chat]
path = "{tiny_phi3_dir}"
max_concurrency = 2
deterministic = true
pinned = true

[models.end]
path = "{tiny_phi3_end_dir}"
kv_cache_gb = 1
idle_unload = -1
warmup = false
properties = {{ KV_CACHE_PRECISION = "u8" }}
""")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k not in ("OVCHAT_API_KEY", "OVCHAT_SERVER")}
    process = subprocess.Popen([sys.executable, "-m", "ovchat", "serve", "--config", str(settings), "--port", str(port),
                                "--log-level", "warning"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env)
    try:
        assert wait_for(lambda: _health(url) == 200, timeout_s=180), process.stderr.read() if process.poll() else ""
        listed = cards(url)
        assert listed["chat"]["state"] == "loaded" and listed["chat"]["pinned"] and listed["end"]["state"] == "unloaded"
        assert listed["end"]["size_bytes"] > listed["chat"]["size_bytes"] > 0  # end's KV-cache cap counts in
        status, body, _ = request(url, "POST", "/v1/chat/completions", {"messages": HELLO, "max_tokens": 4})
        assert status == 200 and body["model"] == "end"  # the file's default
        status, body, _ = request(url, "POST", "/v1/chat/completions",
                                  {"model": "chat", "messages": HELLO, "max_tokens": 4, "n": 3})
        assert status == 400 and body["error"]["param"] == "n"  # chat's max_concurrency 2
        ps = subprocess.run([sys.executable, "-m", "ovchat", "ps", "--server", url], capture_output=True, text=True,
                            env=env, timeout=60)
        assert ps.returncode == 0, ps.stderr
        rows = {line.split()[0]: line.split() for line in ps.stdout.splitlines()[1:]}
        assert rows["chat"][1] == "loaded" and rows["end"][1] == "loaded"
        assert "forever" in rows["end"] and "pinned" in rows["chat"]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, process.stderr.read()


def _health(url) -> int:
    try:
        return request(url, "GET", "/health", timeout_s=5)[0]
    except OSError:
        return 0


def test_a_long_stream_on_a_completes_while_b_waits_under_a_limit_of_one(tiny_phi3_dir, tiny_phi3_end_dir):
    with serve_models(three(tiny_phi3_dir, tiny_phi3_end_dir, models_max=1)) as (url, _):
        assert chat(url, "a")[0] == 200
        a, started = {}, threading.Event()
        thread = threading.Thread(target=read_stream, args=(url, "a", a, started), daemon=True)
        thread.start()
        assert started.wait(60)
        assert "done" not in a  # b is asked while a streams
        status, body, _ = chat(url, "b")
        thread.join(120)
        assert a["done"] and a["finish_reason"] == "length" and a["pieces"] > 100 and "error" not in a
        assert status == 200 and body["model"] == "b"
        assert cards(url)["a"]["evictions"] == 1 and cards(url)["b"]["state"] == "loaded"


@pytest.mark.default_model
def test_the_default_model_under_two_names_answers_alternating_under_a_limit_of_one(default_model_dir):
    from ovchat.server.model_settings import ModelSettings, ModelsSettings

    models = ModelsSettings((ModelSettings("first", str(default_model_dir)),
                             ModelSettings("second", str(default_model_dir))), models_max=1)
    with serve_models(models) as (url, _):
        for name in ("first", "second", "first"):
            status, body, _ = request(url, "POST", "/v1/chat/completions", {
                "model": name, "messages": [{"role": "user", "content": "What is the capital of France?"}],
                "max_tokens": 24, "temperature": 0}, timeout_s=300)
            assert status == 200 and body["model"] == name and "Paris" in body["choices"][0]["message"]["content"]
        assert cards(url)["first"]["loads"] == 2 and cards(url)["second"]["evictions"] == 1
