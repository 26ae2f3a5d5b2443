"""ovchat on Ray Serve, end to end on a local two-node Ray cluster (ray.cluster_utils.Cluster on
127.0.0.1: a head node with no CPU for Serve's controller and proxy, two nodes of one CPU, one
replica of the tiny Phi-3 on each): the official openai client through both replicas, backpressure,
a health-check replacement, and a node lost under 16 streams. Every wait is bounded.

The cluster costs ~10 s to start and each replica a few seconds to load; the module's whole run
is printed (pytest -s) with the time of each fault step."""

import http.client
import json
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

pytest.importorskip("ray.serve", reason="the ray extra is not installed: pip install 'ovchat[ray]'")
openai = pytest.importorskip("openai")
pytestmark = pytest.mark.ray

from ovchat.server.ray_app import REPLICA_HEADER, build  # noqa: E402
from ovchat.server.settings import RaySettings, ServerSettings  # noqa: E402
from ovchat.server.ray_proxy import CALLBACK, CALLBACK_ENV  # noqa: E402

LOOPBACK = {"node_ip_address": "127.0.0.1"}  # every node on 127.0.0.1 (with tests/conftest.py's RAY_ setting)

APP = "ovchat"
MAX_CONCURRENCY = 8    # per replica: 16 streams fill both
MAX_QUEUED = 8         # (Ray counts a request as queued until it is routed: bursts need room)
STEP_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition, timeout_s: float = STEP_TIMEOUT_S, every_s: float = 0.25):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"not true within {timeout_s} s: {condition.__doc__ or condition}")


@dataclass
class Ray2Nodes:
    cluster: object
    workers: list
    url: str
    model: str
    timings: dict = field(default_factory=dict)

    def running_replicas(self) -> int:
        from ray import serve
        status = serve.status().applications.get(APP)
        return status.deployments["ovchat"].replica_states.get("RUNNING", 0) if status else 0


@pytest.fixture(scope="module")
def ray2(tiny_phi3_dir):
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    started = time.monotonic()
    os.environ[CALLBACK_ENV] = CALLBACK  # the proxy's OpenAI errors; nodes inherit the environment
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False, **LOOPBACK})
    workers = [cluster.add_node(num_cpus=1, **LOOPBACK) for _ in range(2)]
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        port = free_port()
        serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
        cluster_s = time.monotonic() - started
        settings = ServerSettings(model=str(tiny_phi3_dir), max_concurrency=MAX_CONCURRENCY, ray=RaySettings(
            num_replicas=2, max_replicas_per_node=1, max_queued_requests=MAX_QUEUED))
        serve.run(build(settings), name=APP, route_prefix="/")
        setup = Ray2Nodes(cluster, workers, f"http://127.0.0.1:{port}", tiny_phi3_dir.name)
        setup.timings.update(cluster_and_serve_s=round(cluster_s, 1), app_s=round(time.monotonic() - started - cluster_s, 1))
        yield setup
    finally:
        try:
            serve.shutdown()
            ray.shutdown()
        finally:
            cluster.shutdown()
            os.environ.pop(CALLBACK_ENV, None)
        print(f"\nRay two-node cluster timings: {setup.timings}")


@dataclass
class Streamed:
    status: int | None = None
    replica: str | None = None
    retry_after: str | None = None
    text: str = ""
    finish_reason: str | None = None
    completion_tokens: int | None = None
    error: dict | None = None
    done: bool = False
    started: threading.Event = field(default_factory=threading.Event)
    failure: str | None = None   # the client's own exception: a cut connection, a timeout
    ended_at: float | None = None


def stream_chat(url: str, content: str, max_tokens: int, result: Streamed, session: str | None = None,
                timeout_s: float = 120) -> None:
    """One streaming chat completion, read line by line (a socket timeout: a hang fails)."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout_s)
    body = {"messages": [{"role": "user", "content": content}], "max_tokens": max_tokens, "stream": True,
            "ignore_eos": True, "stream_options": {"include_usage": True}}
    headers = {"Content-Type": "application/json", **({"X-Session-ID": session} if session else {})}
    try:
        connection.request("POST", "/v1/chat/completions", json.dumps(body), headers)
        response = connection.getresponse()
        result.status, result.replica = response.status, response.headers.get(REPLICA_HEADER)
        result.retry_after = response.headers.get("retry-after")
        if response.status != 200:
            result.error = json.loads(response.read())
            return
        for raw in response:
            line = raw.decode().strip()
            if not line.startswith("data: "):
                continue
            data = line.removeprefix("data: ")
            if data == "[DONE]":
                result.done = True
                break
            event = json.loads(data)
            if "error" in event:
                result.error = event
                continue
            for choice in event.get("choices", []):
                result.text += choice["delta"].get("content") or ""
                result.finish_reason = choice.get("finish_reason") or result.finish_reason
                result.started.set()
            if event.get("usage"):
                result.completion_tokens = event["usage"]["completion_tokens"]
    except Exception as error:  # noqa: BLE001 (recorded: the test says which)
        result.failure = f"{type(error).__name__}: {error}"
    finally:
        result.ended_at = time.monotonic()
        result.started.set()
        connection.close()


def replicas_answering(url: str, model: str, requests: int = 6) -> set:
    client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=120)

    def one(i):
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": f"Say hello, number {i}."}], max_tokens=8)
        answer = raw.parse()
        assert answer.choices[0].finish_reason in ("stop", "length") and answer.usage.completion_tokens > 0
        return raw.headers.get(REPLICA_HEADER)

    with ThreadPoolExecutor(requests) as pool:
        return set(pool.map(one, range(requests)))


def test_the_openai_client_is_served_by_both_replicas_on_both_nodes(ray2):
    names = set()
    for _ in range(4):  # Ray's router picks between two replicas per request: 6 at once can all land on one (seen)
        names |= replicas_answering(ray2.url, ray2.model)
        if len(names) == 2:
            break
    assert len(names) == 2, names                                   # both replicas answer
    assert len({name.split("/")[-1] for name in names}) == 2        # on two nodes
    client = openai.OpenAI(base_url=ray2.url + "/v1", api_key="none", max_retries=0, timeout=60)
    assert [m.id for m in client.models.list().data] == [ray2.model]
    with pytest.raises(openai.NotFoundError) as error:               # the server's own errors, in its shape
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert error.value.body["code"] == "model_not_found"


def test_replicas_ask_ray_for_one_cpu_and_run_openvino_on_one_thread(ray2):
    from ray import serve
    handle = serve.get_deployment_handle("ovchat", APP)
    described = [handle.describe.remote().result(timeout_s=30) for _ in range(6)]
    assert {d["inference_num_threads"] for d in described} == {1}
    assert {d["omp_num_threads"] for d in described} == {"1"}       # what Ray sets (OpenVINO ignores it)


def ray_metrics_text() -> str:
    """Every alive node's Prometheus export (what Prometheus scrapes on a Ray cluster)."""
    import urllib.request
    import ray
    texts = []
    for node in ray.nodes():
        if node["Alive"] and node.get("MetricsExportPort"):
            url = f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
            with urllib.request.urlopen(url, timeout=10) as response:
                texts.append(response.read().decode())
    return "\n".join(texts)


def test_replicas_token_counters_reach_rays_prometheus_export(ray2):
    replicas_answering(ray2.url, ray2.model)

    def exported():
        """ray_ovchat_generation_tokens of both replicas in the nodes' metrics export"""
        lines = [line for line in ray_metrics_text().splitlines()
                 if line.startswith("ray_ovchat_generation_tokens") and 'replica="' in line]
        return len({line.split('replica="')[1].split('"')[0] for line in lines}) == 2 and lines

    lines = wait_until(exported, timeout_s=90, every_s=2)
    assert all(float(line.split()[-1]) > 0 for line in lines), lines
    text = ray_metrics_text()
    for name in ("ray_ovchat_prompt_tokens", "ray_ovchat_requests", "ray_ovchat_requests_running",
                 "ray_ovchat_kv_cache_usage_ratio"):
        assert name in text, name


def test_past_the_replicas_and_the_queue_clients_get_429_with_retry_after(ray2):
    capacity = 2 * MAX_CONCURRENCY + MAX_QUEUED   # running on both replicas + waiting in the proxy
    long = [Streamed() for _ in range(capacity)]
    # (the queued ones wait, silent, until the first ones end: minutes on a busy machine)
    threads = [threading.Thread(target=stream_chat, args=(ray2.url, f"Count to many, {i}.", 1500, long[i], None, 300))
               for i in range(capacity)]
    for i, thread in enumerate(threads):
        thread.start()
        if i < 2 * MAX_CONCURRENCY:  # fill the replicas one by one, then the queue
            assert long[i].started.wait(STEP_TIMEOUT_S) and long[i].status == 200, long[i]
    time.sleep(1)  # the last MAX_QUEUED reach the proxy's queue
    extra = [Streamed() for _ in range(4)]
    for result in extra:
        stream_chat(ray2.url, "One more.", 8, result)
    for thread in threads:
        thread.join(300)
    assert not any(thread.is_alive() for thread in threads), "a request hung"
    assert [r.status for r in extra] == [429] * 4, [(r.status, r.error) for r in extra]
    assert all(r.error["error"]["code"] == "queue_full" and r.error["error"]["type"] == "rate_limit_error"
               for r in extra)
    assert all(r.retry_after == "1" for r in extra)
    assert all(r.status == 200 and r.done and r.completion_tokens == 1500 for r in long), \
        [(r.status, r.error, r.failure) for r in long if not r.done][:2]


def test_a_replica_whose_engine_stopped_fails_its_health_check_and_is_replaced(ray2):
    from ray import serve
    handle = serve.get_deployment_handle("ovchat", APP)
    started = time.monotonic()
    stopped = handle.stop_engine.remote().result(timeout_s=30)

    def replaced():
        """two healthy replicas answer, the stopped one not among them"""
        try:
            names = replicas_answering(ray2.url, ray2.model)
        except openai.APIStatusError as error:
            # Until it is replaced: the stopped replica's 503, or a 429 while one replica takes it all.
            assert (error.status_code, error.body["code"]) in ((503, "engine_stopped"), (429, "queue_full")), error.body
            assert error.response.headers.get("retry-after"), error.response.headers
            return False
        return len(names) == 2 and stopped not in names

    wait_until(replaced)
    ray2.timings["health_check_replacement_s"] = round(time.monotonic() - started, 1)


def test_a_node_lost_under_16_streams(ray2):
    """Remove the node of one replica while 16 streams run: each stream completes or ends with an
    error event then [DONE]; none hangs; new requests go to the other replica; with the node back,
    two replicas run again."""
    wait_until(lambda: ray2.running_replicas() == 2)
    results = [Streamed() for _ in range(16)]
    threads = [threading.Thread(target=stream_chat, args=(ray2.url, f"Tell a long story, number {i}.", 1500, results[i]))
               for i in range(16)]
    for thread, result in zip(threads, results):  # one after another: a burst would overflow the proxy's queue
        thread.start()
        assert result.started.wait(STEP_TIMEOUT_S), "a stream never started"
    assert all(r.status == 200 for r in results), [(r.status, r.error, r.failure) for r in results]
    victim_replica = results[0].replica
    node_id = victim_replica.split("/")[-1]
    victim = next(node for node in ray2.workers if node.node_id.startswith(node_id))
    survivor = next(r.replica for r in results if r.replica != victim_replica)
    served_again = threading.Event()

    def new_requests_until_the_survivor_answers():
        while not served_again.is_set() and time.monotonic() < lost_at + STEP_TIMEOUT_S:
            probe = Streamed()
            stream_chat(ray2.url, "Say hi.", 8, probe)
            if probe.status == 200 and probe.done and probe.error is None and probe.replica == survivor:
                ray2.timings["new_request_served_after_loss_s"] = round(time.monotonic() - lost_at, 1)
                served_again.set()
            time.sleep(0.1)

    lost_at = time.monotonic()
    ray2.cluster.remove_node(victim, allow_graceful=False)
    prober = threading.Thread(target=new_requests_until_the_survivor_answers)
    prober.start()
    for thread in threads:
        thread.join(STEP_TIMEOUT_S)
    assert not any(thread.is_alive() for thread in threads), "a stream hung after the node was lost"
    prober.join(STEP_TIMEOUT_S)
    assert served_again.is_set(), "no new request was served by the other replica"
    lost = [r for r in results if r.replica == victim_replica]
    ray2.timings["lost_streams_ended_after_loss_s"] = round(max(r.ended_at for r in lost) - lost_at, 1)
    ray2.timings["other_streams_completed_after_loss_s"] = round(
        max(r.ended_at for r in results if r not in lost) - lost_at, 1)
    for r in results:
        assert r.failure is None, r.failure
        completed = r.done and r.error is None and r.finish_reason == "length" and r.completion_tokens == 1500
        failed_cleanly = r.done and r.error is not None and r.error["error"]["code"] == "replica_failed"
        assert completed or failed_cleanly, r
        assert failed_cleanly == (r.replica == victim_replica), r  # only the lost replica's streams fail
    back_at = time.monotonic()
    ray2.workers = [node for node in ray2.workers if node is not victim] + [ray2.cluster.add_node(num_cpus=1, **LOOPBACK)]
    wait_until(lambda: ray2.running_replicas() == 2)
    wait_until(lambda: len(replicas_answering(ray2.url, ray2.model)) == 2)
    ray2.timings["replicas_back_to_2_after_node_added_s"] = round(time.monotonic() - back_at, 1)
