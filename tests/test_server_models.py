"""Several models behind one server (server/models.py, server/model_routes.py), on fake engines:
load on demand, a 404 naming the models, at most N loaded with the least recently used idle one
evicted, never a model answering a request, pinning, idle unload on an injected clock,
ollama's keep_alive, the admin routes, a model that fails to load, /health and the metrics."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from server_harness import FakeEngine, request, running_server, wait_for

pytest.importorskip("uvicorn")

from ovchat.server.model_settings import ModelSettings, ModelsSettings  # noqa: E402

HELLO = [{"role": "user", "content": "hi"}]


class Loader:
    """Loads FakeEngines, counting the loads per model; `failing` models raise as a bad export would."""

    def __init__(self, gates: dict | None = None, failing=(), honours_cancel: bool = True):
        self.loads: dict[str, int] = {}
        self.engines: dict[str, FakeEngine] = {}
        self.closed: list[str] = []
        self.gates, self.failing, self.honours_cancel = gates or {}, failing, honours_cancel

    def __call__(self, model: ModelSettings):
        if model.name in self.failing:
            raise RuntimeError(f"no model at {model.path}")
        self.loads[model.name] = self.loads.get(model.name, 0) + 1
        engine = FakeEngine(gate=self.gates.get(model.name), honours_cancel_at_gate=self.honours_cancel)
        engine.close = lambda: self.closed.append(model.name)
        self.engines[model.name] = engine
        return engine


def models(*names, pinned=(), models_max=0, idle=None, per_model_idle=None, default=None):
    per_model_idle = per_model_idle or {}
    return ModelsSettings(tuple(ModelSettings(n, f"/models/{n}", pinned=n in pinned, load_at_start=n in pinned,
                                              idle_unload_s=per_model_idle.get(n), idle_set=n in per_model_idle)
                                for n in names), models_max=models_max, idle_unload_s=idle, default=default)


def chat(url, model=None, **extra):
    body = {"messages": HELLO, "max_tokens": 8, **extra}
    if model is not None:
        body["model"] = model
    return request(url, "POST", "/v1/chat/completions", body)


def states(url, headers=None) -> dict:
    return {card["id"]: card["state"] for card in request(url, "GET", "/v1/models", headers=headers)[1]["data"]}


def on_loop(app, function):
    """Run `function()` on the server's event loop; its result."""
    state = app.state.ovchat

    async def call():
        return function()
    return asyncio.run_coroutine_threadsafe(call(), state.loop).result(10)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def stream(url, model, outcome: dict) -> None:
    status, body, _ = request(url, "POST", "/v1/chat/completions",
                              {"model": model, "messages": HELLO, "max_tokens": 8, "stream": True})
    outcome["status"] = status
    outcome["done"] = isinstance(body, str) and body.rstrip().endswith("data: [DONE]")
    outcome["text"] = "".join(json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                              for line in (body if isinstance(body, str) else "").splitlines()
                              if line.startswith("data: {") and json.loads(line[6:])["choices"])


def test_models_load_on_their_first_request_and_a_request_naming_none_gets_the_default():
    loader = Loader()
    with running_server(loader, models=models("a", "b", "c")) as (url, app):
        assert states(url) == {"a": "unloaded", "b": "unloaded", "c": "unloaded"}
        status, body, _ = chat(url, "b")
        assert status == 200 and body["model"] == "b" and body["choices"][0]["message"]["content"] == "Hello, world."
        assert states(url) == {"a": "unloaded", "b": "loaded", "c": "unloaded"}
        status, body, _ = chat(url)  # no model: the default (the first)
        assert status == 200 and body["model"] == "a"
        assert chat(url, "c")[0] == 200
        assert loader.loads == {"a": 1, "b": 1, "c": 1}
        card = request(url, "GET", "/v1/models/b")[1]
        assert card["id"] == "b" and card["state"] == "loaded" and card["requests_in_flight"] == 0


def test_concurrent_first_requests_wait_for_one_load():
    loader = Loader()
    with running_server(loader, models=models("a", "b")) as (url, _):
        results = []
        threads = [threading.Thread(target=lambda: results.append(chat(url, "b")[0])) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert results == [200] * 6 and loader.loads == {"b": 1}


def test_an_unknown_model_is_a_404_in_openai_shape_naming_the_models():
    with running_server(Loader(), models=models("a", "b")) as (url, _):
        status, body, _ = chat(url, "nope")
        assert status == 404 and body["error"]["code"] == "model_not_found" and body["error"]["param"] == "model"
        assert "'a'" in body["error"]["message"] and "'b'" in body["error"]["message"]
        assert request(url, "GET", "/v1/models/nope")[0] == 404


def test_at_most_one_loaded_alternating_requests_are_all_answered():
    loader = Loader()
    with running_server(loader, models=models("a", "b", models_max=1)) as (url, _):
        for i in range(6):
            name = "ab"[i % 2]
            status, body, _ = chat(url, name)
            assert status == 200 and body["model"] == name
            assert list(states(url).values()).count("loaded") == 1
        assert loader.loads == {"a": 3, "b": 3}
        cards = request(url, "GET", "/v1/models")[1]["data"]
        assert sum(card["evictions"] for card in cards) == 5


def test_a_long_stream_on_a_is_never_cut_for_b_which_waits_then_is_answered():
    gate = threading.Event()
    loader = Loader(gates={"a": gate})
    with running_server(loader, models=models("a", "b", models_max=1)) as (url, _):
        a, b = {}, {}
        a_thread = threading.Thread(target=stream, args=(url, "a", a))
        a_thread.start()
        assert wait_for(lambda: states(url)["a"] == "loaded" and loader.engines["a"].active == 1)
        b_thread = threading.Thread(target=lambda: b.update(zip(("status", "body"), chat(url, "b")[:2])))
        b_thread.start()
        # b waits: a answers a request, so it stays loaded and b does not load.
        assert wait_for(lambda: request(url, "GET", "/v1/models/a")[1]["requests_in_flight"] == 1)
        assert states(url) == {"a": "loaded", "b": "unloaded"} and "b" not in loader.loads
        gate.set()
        a_thread.join(30)
        b_thread.join(30)
        assert a["status"] == 200 and a["done"] and a["text"] == "Hello, world."
        assert b["status"] == 200 and b["body"]["model"] == "b"
        assert states(url) == {"a": "unloaded", "b": "loaded"}


def test_a_model_that_cannot_get_room_in_time_is_a_503_with_retry_after():
    gate = threading.Event()
    loader = Loader(gates={"a": gate}, honours_cancel=False)  # a stays busy past its deadline
    with running_server(loader, models=models("a", "b", models_max=1), request_timeout_s=0.5) as (url, _):
        a = {}
        a_thread = threading.Thread(target=stream, args=(url, "a", a))
        a_thread.start()
        assert wait_for(lambda: loader.engines.get("a") is not None and loader.engines["a"].active == 1)
        status, body, headers = chat(url, "b")
        assert status == 503 and body["error"]["code"] == "model_unavailable" and headers["Retry-After"] == "5"
        gate.set()
        a_thread.join(30)
        assert a["status"] == 200 and a["done"] and "b" not in loader.loads


def test_making_room_evicts_one_model_the_least_recently_used():
    loader = Loader()
    with running_server(loader, models=models("a", "b", "c", models_max=2)) as (url, _):
        for name in ("a", "b", "a", "c"):  # b is the least recently used when c comes
            assert chat(url, name)[0] == 200
        assert wait_for(lambda: states(url) == {"a": "loaded", "b": "unloaded", "c": "loaded"})
        assert loader.closed == ["b"]


def test_a_memory_budget_bounds_the_loaded_models():
    loader = Loader()
    settings = ModelsSettings(tuple(ModelSettings(n, f"/models/{n}", kv_cache_gb=kv) for n, kv in
                                    (("big", 3), ("small", 1), ("tiny", 1))), memory_gb=4.5)
    with running_server(loader, models=settings) as (url, _):
        assert chat(url, "small")[0] == 200 and chat(url, "tiny")[0] == 200
        assert states(url) == {"big": "unloaded", "small": "loaded", "tiny": "loaded"}
        assert chat(url, "big")[0] == 200  # 3 + 1 + 1 > 4.5: the least recently used (small) goes
        assert wait_for(lambda: states(url) == {"big": "loaded", "small": "unloaded", "tiny": "loaded"})
        assert request(url, "GET", "/v1/models/big")[1]["size_bytes"] == 3 * 2**30


def test_a_pinned_model_loads_at_start_and_is_never_evicted():
    loader = Loader()
    with running_server(loader, models=models("a", "b", "c", pinned=("a",), models_max=2)) as (url, _):
        assert wait_for(lambda: states(url)["a"] == "loaded")
        for name in ("b", "c", "b", "c"):
            assert chat(url, name)[0] == 200
        assert states(url)["a"] == "loaded" and loader.loads["a"] == 1 and "a" not in loader.closed
        assert loader.loads["b"] == 2 and loader.loads["c"] == 2


def test_idle_models_unload_after_their_idle_time_on_an_injected_clock():
    loader = Loader()
    clock = Clock()
    with running_server(loader, models=models("a", "b", "c", pinned=("c",), idle=300, per_model_idle={"b": 60})) \
            as (url, app):
        pool = app.state.ovchat.pool
        pool.clock = clock
        assert chat(url, "a")[0] == 200 and chat(url, "b")[0] == 200
        assert wait_for(lambda: states(url)["c"] == "loaded")
        clock.now += 59
        assert on_loop(app, pool.sweep) == []
        clock.now += 2
        assert on_loop(app, pool.sweep) == ["b"]
        clock.now += 300
        assert on_loop(app, pool.sweep) == ["a"]
        assert wait_for(lambda: states(url) == {"a": "unloaded", "b": "unloaded", "c": "loaded"})
        clock.now += 10**6
        assert on_loop(app, pool.sweep) == []  # pinned


def test_the_idle_sweep_runs_by_itself():
    loader = Loader()
    with running_server(loader, models=models("a", "b", per_model_idle={"a": 0.2})) as (url, _):
        assert chat(url, "a")[0] == 200
        assert wait_for(lambda: states(url)["a"] == "unloaded", timeout_s=30)
        assert loader.closed == ["a"]


def test_keep_alive_0_unloads_after_the_request_and_minus_1_keeps_it():
    loader = Loader()
    clock = Clock()
    with running_server(loader, models=models("a", "b", idle=60)) as (url, app):
        app.state.ovchat.pool.clock = clock
        status, body, _ = chat(url, "a", keep_alive=0)
        assert status == 200 and body["choices"][0]["message"]["content"] == "Hello, world."
        assert wait_for(lambda: states(url)["a"] == "unloaded") and loader.closed == ["a"]
        assert chat(url, "b", keep_alive=-1)[0] == 200
        assert chat(url, "a", keep_alive="5m")[0] == 200
        pool = app.state.ovchat.pool
        clock.now += 299
        assert on_loop(app, pool.sweep) == []
        clock.now += 2
        assert on_loop(app, pool.sweep) == ["a"]  # b: kept for ever
        status, body, _ = chat(url, "a", keep_alive="soon")
        assert status == 400 and body["error"]["param"] == "keep_alive"


def test_keep_alive_0_on_a_stream_unloads_once_it_ends():
    loader = Loader()
    with running_server(loader, models=models("a", "b")) as (url, _):
        status, body, _ = request(url, "POST", "/v1/chat/completions",
                                  {"model": "a", "messages": HELLO, "stream": True, "keep_alive": 0})
        assert status == 200 and body.rstrip().endswith("data: [DONE]") and "Hello" in body
        assert wait_for(lambda: states(url)["a"] == "unloaded")


def test_admin_routes_load_and_unload_behind_the_key():
    loader = Loader()
    key = {"Authorization": "Bearer k"}
    with running_server(loader, models=models("a", "b"), api_key="k") as (url, _):
        assert request(url, "POST", "/v1/models/b/load", b"")[0] == 401
        status, body, _ = request(url, "POST", "/v1/models/b/load", b"", headers=key)
        assert status == 200 and body["state"] == "loaded" and body["id"] == "b"
        status, body, _ = request(url, "POST", "/v1/models/b/unload", b"", headers=key)
        assert status == 200 and body["state"] in ("unloading", "unloaded")
        assert request(url, "POST", "/models/load", {"model": "a"}, headers=key)[1]["state"] == "loaded"
        assert request(url, "POST", "/models/unload", {"model": "a"}, headers=key)[0] == 200
        assert wait_for(lambda: states(url, key) == {"a": "unloaded", "b": "unloaded"})
        assert request(url, "POST", "/v1/models/zz/load", b"", headers=key)[0] == 404
        assert loader.loads == {"a": 1, "b": 1} and sorted(loader.closed) == ["a", "b"]


def test_unloading_a_model_that_answers_a_request_is_refused():
    gate = threading.Event()
    loader = Loader(gates={"a": gate})
    with running_server(loader, models=models("a", "b")) as (url, _):
        a = {}
        thread = threading.Thread(target=stream, args=(url, "a", a))
        thread.start()
        assert wait_for(lambda: loader.engines.get("a") is not None and loader.engines["a"].active == 1)
        status, body, _ = request(url, "POST", "/v1/models/a/unload", b"")
        assert status == 409 and body["error"]["code"] == "model_busy"
        gate.set()
        thread.join(30)
        assert a["done"] and states(url)["a"] == "loaded"


def test_a_model_that_fails_to_load_fails_alone_and_says_why():
    with running_server(Loader(failing=("bad",)), models=models("a", "bad")) as (url, _):
        status, body, _ = chat(url, "bad")
        assert status == 503 and body["error"]["code"] == "load_failed" and "no model at" in body["error"]["message"]
        card = request(url, "GET", "/v1/models/bad")[1]
        assert card["state"] == "failed" and "no model at /models/bad" in card["error"]
        assert chat(url, "a")[0] == 200
        status, body, _ = request(url, "GET", "/health")
        assert status == 200 and body["failed"] == ["bad"] and body["models"]["a"] == "loaded"


def test_health_is_503_until_the_pinned_models_serve_and_names_a_failed_one():
    with running_server(Loader(failing=("p",)), models=models("p", "a", pinned=("p",)), wait_ready=False) as (url, _):
        assert wait_for(lambda: request(url, "GET", "/health")[1].get("failed") == ["p"])
        status, body, _ = request(url, "GET", "/health")
        assert status == 503 and body["status"] == "load_failed" and not body["ready"]
    with running_server(Loader(), models=models("p", "a", pinned=("p",))) as (url, _):
        status, body, _ = request(url, "GET", "/health")
        assert status == 200 and body["models"] == {"p": "loaded", "a": "unloaded"}


def test_metrics_carry_the_model_label():
    with running_server(Loader(), models=models("a", "b")) as (url, _):
        assert chat(url, "a")[0] == 200 and chat(url, "b")[0] == 200 and chat(url, "b")[0] == 200
        text = request(url, "GET", "/metrics")[1]
        lines = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
        assert float(lines['ovchat_generation_tokens_total{model="a"}']) == 4
        assert float(lines['ovchat_generation_tokens_total{model="b"}']) == 8
        assert float(lines['ovchat_model_loaded{model="a"}']) == 1
        assert float(lines['ovchat_generations_finished_total{model="b",reason="stop"}']) == 2


def test_the_pool_waits_for_room_rather_than_evicting_a_busy_model():
    """The pool alone, on a loop: b cannot evict a while a is held; it loads once a is released."""
    from ovchat.server.models import ModelPool

    async def scenario():
        loaded = []
        pool = ModelPool(models("a", "b", models_max=1), lambda m: loaded.append(m.name) or FakeEngine(),
                         lambda m, engine: _FakeServing(engine))
        await pool.acquire("a", None)
        waiting = asyncio.ensure_future(pool.acquire("b", None))
        await asyncio.sleep(0)
        assert not waiting.done() and pool.models["a"].state == "loaded"
        pool.release("a")
        await asyncio.wait_for(waiting, 10)
        assert loaded == ["a", "b"] and pool.models["a"].state in ("unloading", "unloaded")
        loop_time = asyncio.get_running_loop().time()
        with pytest.raises(Exception) as error:  # b held: a cannot get room before its deadline
            await pool.acquire("a", loop_time + 0.05)
        assert error.value.status == 503
    asyncio.run(scenario())


class _FakeServing:
    def __init__(self, engine):
        self.engine, self.busy, self.in_flight, self.on_finished = engine, False, 0, None

    def close(self):
        pass


def test_the_chat_page_picks_a_model_in_headless_chromium():
    from pathlib import Path
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip("needs Debian's chromium: apt-get install chromium")
    loader = Loader()
    with running_server(loader, models=models("a", "b")) as (url, _):
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(chromium), args=["--headless", "--no-sandbox",
                                                                                       "--disable-gpu"])
            try:
                page = browser.new_page()
                page.goto(url + "/")
                page.wait_for_function("!document.getElementById('picker').hidden")
                assert page.eval_on_selector_all("#picker option", "os => os.map(o => o.value)") == ["a", "b"]
                page.select_option("#picker", "b")
                page.fill("#prompt", "hi")
                page.click("#send")
                page.wait_for_function("[...document.querySelectorAll('.assistant')].some(e => "
                                       "e.textContent.includes('Hello, world.'))", timeout=30_000)
            finally:
                browser.close()
        assert loader.loads == {"b": 1}
        assert states(url) == {"a": "unloaded", "b": "loaded"}


def test_completions_and_responses_route_by_model_too():
    loader = Loader()
    with running_server(loader, models=models("a", "b")) as (url, _):
        status, body, _ = request(url, "POST", "/v1/completions", {"model": "b", "prompt": "hi", "max_tokens": 4})
        assert status == 200 and body["model"] == "b" and body["choices"][0]["text"] == "Hello, world."
        status, body, _ = request(url, "POST", "/v1/responses", {"model": "a", "input": "hi", "keep_alive": "1m"})
        assert status == 200 and body["model"] == "a" and body["output"][0]["content"][0]["text"] == "Hello, world."
        assert request(url, "POST", "/v1/responses", {"model": "zz", "input": "hi"})[0] == 404
        assert loader.loads == {"a": 1, "b": 1}
