"""Several models on Ray Serve through Serve's model multiplexing (server/ray_models.py), end to
end on a local two-node Ray cluster (ray.cluster_utils.Cluster on 127.0.0.1, as test_ray_serve.py):
two replicas, one per node, at most one model loaded per replica. Requests alternating between two
tiny models are all answered, each by the replica holding its model (the same replica and engine
process every time: no reload); a third model evicts a replica's model (Serve's LRU) and is
answered, and so is the evicted one afterwards; GET /v1/models lists the models; an unknown model
is a 404 naming them. First, `ovchat serve --ray -m a=PATH -m b=PATH` as a process (its own local
Ray, before the cluster starts). Every wait is bounded."""

import os
import signal
import subprocess
import sys

import pytest

pytest.importorskip("ray.serve", reason="the ray extra is not installed: pip install 'ovchat[ray]'")
pytestmark = [pytest.mark.ray, pytest.mark.timeout(900)]

from ovchat.server.ray_app import REPLICA_HEADER, build  # noqa: E402
from ovchat.server.ray_models import MODELS_HEADER, PID_HEADER  # noqa: E402
from ovchat.server.ray_proxy import CALLBACK, CALLBACK_ENV, MODEL_HEADER_ENV  # noqa: E402
from ovchat.server.settings import RaySettings, ServerSettings  # noqa: E402
from server_harness import request  # noqa: E402
from test_ray_serve import LOOPBACK, free_port, wait_until  # noqa: E402

APP = "ovchat"
HELLO = [{"role": "user", "content": "Hello, world!"}]


CLI = "from ovchat.cli.main import main; raise SystemExit(main())"


def test_ovchat_serve_ray_with_two_models_answers_each_and_stops_on_sigterm(tiny_phi3_dir, tiny_phi3_end_dir, tmp_path):
    port, log = free_port(), open(tmp_path / "serve.log", "w")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("RAY_", "OVCHAT_RAY_"))}
    process = subprocess.Popen([sys.executable, "-c", CLI, "serve", "--ray", "-m", f"a={tiny_phi3_dir}",
                                "-m", f"b={tiny_phi3_end_dir}", "--models-per-replica", "1", "--port", str(port),
                                "--max-concurrency", "2", "--log-level", "warning"],
                               stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        def healthy():
            """the app answers /health"""
            assert process.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                return request(url, "GET", "/health", timeout_s=5)[0] == 200
            except OSError:
                return False

        wait_until(healthy, timeout_s=240, every_s=0.5)
        for model in ("a", "b", "a"):  # one replica, one model at a time: b evicts a, then a evicts b
            status, body, _, loaded, pid = chat(url, model)
            assert status == 200 and body["model"] == model and loaded == model and pid, (body, loaded)
        assert sorted(card["id"] for card in request(url, "GET", "/v1/models")[1]["data"]) == ["a", "b"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 0, (tmp_path / "serve.log").read_text()[-3000:]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        log.close()


@pytest.fixture(scope="module")
def ray_models(tiny_phi3_dir, tiny_phi3_end_dir):
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    from ovchat.server.model_settings import ModelSettings, ModelsSettings

    os.environ[CALLBACK_ENV] = CALLBACK         # the proxy's OpenAI errors, and the body's model as
    os.environ[MODEL_HEADER_ENV] = "1"          # Serve's multiplexed model id; nodes inherit these
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False, **LOOPBACK})
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1, **LOOPBACK)
        ray.init(address=cluster.address, log_to_driver=False)
        port = free_port()
        serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
        models = ModelsSettings((ModelSettings("a", str(tiny_phi3_dir)), ModelSettings("b", str(tiny_phi3_end_dir)),
                                 ModelSettings("c", str(tiny_phi3_dir))))
        settings = ServerSettings(models=models, max_concurrency=4, engine_options={"warmup": False},
                                  request_timeout_s=180, ray=RaySettings(
                                      num_replicas=2, max_replicas_per_node=1, max_num_models_per_replica=1))
        serve.run(build(settings), name=APP, route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        try:
            serve.shutdown()
            ray.shutdown()
        finally:
            cluster.shutdown()
            os.environ.pop(CALLBACK_ENV, None)
            os.environ.pop(MODEL_HEADER_ENV, None)


def chat(url: str, model: str):
    """(status, body, replica, the replica's loaded models, the engine process that answered)."""
    status, body, headers = request(url, "POST", "/v1/chat/completions",
                                    {"model": model, "messages": HELLO, "max_tokens": 4, "temperature": 0},
                                    timeout_s=240)
    return status, body, headers.get(REPLICA_HEADER), headers.get(MODELS_HEADER), headers.get(PID_HEADER)


def test_alternating_models_each_answered_by_the_replica_holding_it(ray_models):
    url = ray_models
    # Placement: a lands on one replica, b on the replica holding the fewest models (the other);
    # a few rounds at most in case the routers had not yet heard where a was loaded.
    for _ in range(4):
        placed = {model: chat(url, model) for model in ("a", "b")}
        assert all(answer[0] == 200 for answer in placed.values()), placed
        if placed["a"][2] != placed["b"][2]:
            break
    homes = {model: answer[2] for model, answer in placed.items()}
    assert homes["a"] != homes["b"], placed
    seen = {"a": set(), "b": set()}
    for model in ["a", "b"] * 5:
        status, body, replica, loaded, pid = chat(url, model)
        assert status == 200 and body["model"] == model, body
        assert body["choices"][0]["message"]["content"] is not None
        assert replica == homes[model] and loaded == model, (model, replica, loaded, homes)
        seen[model].add((replica, pid))
    # Each model answered by one replica and one engine process throughout: never reloaded.
    assert all(len(answers) == 1 for answers in seen.values()), seen


def test_a_third_model_evicts_by_lru_and_every_model_still_answers(ray_models):
    url = ray_models
    homes = {model: chat(url, model)[2] for model in ("a", "b")}
    status, body, replica, loaded, _ = chat(url, "c")
    assert status == 200 and body["model"] == "c", body
    assert loaded == "c", loaded  # that replica's model was evicted: at most one per replica
    evicted = next(model for model, home in homes.items() if home == replica)
    status, body, _, loaded, _ = chat(url, evicted)
    assert status == 200 and body["model"] == evicted and loaded == evicted, (body, loaded)

    def listed():
        """GET /v1/models lists the three models"""
        status, body, _ = request(url, "GET", "/v1/models")
        return status == 200 and sorted(card["id"] for card in body["data"]) == ["a", "b", "c"]

    assert listed()
    status, body, _ = request(url, "POST", "/v1/chat/completions", {"model": "zz", "messages": HELLO}, timeout_s=60)
    assert status == 404 and body["error"]["code"] == "model_not_found", body
    assert all(f"'{name}'" in body["error"]["message"] for name in "abc"), body
