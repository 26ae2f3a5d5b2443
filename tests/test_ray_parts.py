"""The Ray Serve app's parts without a cluster (seconds): its arguments and deployment options, the
conversation router's choice, the proxy's OpenAI errors and the replica header on fake ASGI apps."""

import asyncio
import json
from types import SimpleNamespace

import pytest

pytest.importorskip("ray.serve", reason="the ray extra is not installed: pip install 'ovchat[ray]'")
pytestmark = pytest.mark.ray

from ovchat.server.ray_app import REPLICA_HEADER, ReplicaHeader, app_builder, deployment_options  # noqa: E402
from ovchat.server.ray_proxy import OpenAIErrors  # noqa: E402
from ovchat.server.ray_router import ranked  # noqa: E402
from ovchat.server.settings import RaySettings, ServerSettings, from_serve_args  # noqa: E402


def test_serve_run_arguments_get_their_types():
    settings = from_serve_args({"model": "/m", "num_cpus": "2", "num_replicas": "3", "max_replicas_per_node": "1",
                                "conversation_affinity": "false", "api_key": "None"})
    ray = settings.ray
    assert (settings.model, ray.num_cpus, ray.num_replicas, ray.max_replicas_per_node) == ("/m", 2.0, 3, 1)
    assert ray.conversation_affinity is False and settings.api_key is None and ray.threads == 2
    assert from_serve_args({"num_replicas": "auto"}).ray.autoscaling
    with pytest.raises(ValueError, match="unknown ovchat Ray app argument.*replica_count"):
        from_serve_args({"replica_count": "2"})


def _bound_settings(app) -> ServerSettings:
    (settings,) = app._bound_deployment.init_args  # what each replica's __init__ receives
    return settings


@pytest.mark.parametrize("args", [
    {"engine_options": '{"KV_CACHE_PRECISION": "u8", "NUM_STREAMS": 1}', "engine_process": "false"},  # serve run k=v
    {"engine_options": {"KV_CACHE_PRECISION": "u8", "NUM_STREAMS": 1}, "engine_process": False},      # a config file
], ids=["serve-run", "config-file"])
def test_app_builder_gives_replicas_dict_and_bool_options_typed(args):
    settings = _bound_settings(app_builder(args))
    assert settings.engine_options == {"KV_CACHE_PRECISION": "u8", "NUM_STREAMS": 1}
    assert settings.engine_process is False
    assert settings.engine_arguments()["KV_CACHE_PRECISION"] == "u8"  # what the replica gives Engine.load


def test_deployment_options_follow_the_arguments():
    chosen = deployment_options(ServerSettings(max_concurrency=8, ray=RaySettings(
        num_cpus=2, num_replicas=3, max_replicas_per_node=1, max_queued_requests=5)))
    assert chosen["ray_actor_options"] == {"num_cpus": 2} and chosen["num_replicas"] == 3
    assert chosen["max_replicas_per_node"] == 1 and chosen["max_ongoing_requests"] == 8
    assert chosen["max_queued_requests"] == 5
    assert (chosen["backpressure_config"].status_code, chosen["backpressure_config"].retry_after_s) == (429, 1)
    assert chosen["request_router_config"].request_router_class.endswith("ConversationRouter")
    scaled = deployment_options(ServerSettings(ray=RaySettings(num_replicas="auto", min_replicas=1, max_replicas=6,
                                                               conversation_affinity=False)))
    assert "num_replicas" not in scaled and scaled["autoscaling_config"].max_replicas == 6
    assert "request_router_config" not in scaled and "max_replicas_per_node" not in scaled


def _replicas(*names):
    return [SimpleNamespace(replica_id=SimpleNamespace(unique_id=name)) for name in names]


def test_a_conversation_keeps_its_replica_and_only_a_lost_replicas_conversations_move():
    replicas = _replicas("a", "b", "c")
    homes = {f"chat-{i}": ranked(f"chat-{i}", replicas)[0][0].replica_id.unique_id for i in range(300)}
    assert all(ranked(chat, list(reversed(replicas)))[0][0].replica_id.unique_id == home for chat, home in homes.items())
    counts = {name: list(homes.values()).count(name) for name in "abc"}
    assert min(counts.values()) > 60, counts  # spread, roughly evenly
    without_b = {chat: ranked(chat, _replicas("a", "c"))[0][0].replica_id.unique_id for chat in homes}
    assert all(without_b[chat] == home for chat, home in homes.items() if home != "b")
    first, rest = ranked("chat-1", replicas)
    assert len(first) == 1 and {r.replica_id.unique_id for r in rest} == {"a", "b", "c"} - {first[0].replica_id.unique_id}


def _call(middleware_app, scope=None):
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(middleware_app(scope or {"type": "http", "path": "/v1/chat/completions"}, receive, send))
    return sent


def _app(*messages, fail: bool = False):
    async def app(scope, receive, send):
        for message in messages:
            await send(message)
        if fail:
            raise RuntimeError("the replica died")
    return app


def _start(status, content_type, *extra):
    return {"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type), *extra]}


def _body(data: bytes, more: bool = False):
    return {"type": "http.response.body", "body": data, "more_body": more}


def test_the_proxys_plain_text_backpressure_becomes_an_openai_429_with_retry_after():
    sent = _call(OpenAIErrors(_app(_start(429, b"text/plain; charset=utf-8", (b"retry-after", b"1")),
                                   _body(b"Request dropped due to backpressure"))))
    start, body = sent
    headers = dict(start["headers"])
    assert start["status"] == 429 and headers[b"retry-after"] == b"1" and headers[b"content-type"] == b"application/json"
    error = json.loads(body["body"])["error"]
    assert error["code"] == "queue_full" and error["type"] == "rate_limit_error" and "backpressure" in error["message"]


def test_a_stream_cut_short_ends_with_an_error_event_then_done():
    sent = _call(OpenAIErrors(_app(_start(200, b"text/event-stream"), _body(b'data: {"x": 1}\n\n', more=True), fail=True)))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body", "http.response.body"]
    tail = sent[-1]
    assert tail["more_body"] is False
    events = [line.removeprefix("data: ") for line in tail["body"].decode().split("\n\n") if line]
    assert json.loads(events[0])["error"]["code"] == "replica_failed" and events[1] == "[DONE]"


def test_no_answer_at_all_becomes_an_openai_503_and_good_answers_pass_untouched():
    start, body = _call(OpenAIErrors(_app(fail=True)))
    assert start["status"] == 503 and json.loads(body["body"])["error"]["code"] == "replica_failed"
    good = [_start(200, b"application/json"), _body(b'{"ok": true}')]
    assert _call(OpenAIErrors(_app(*good))) == good
    replica_error = [_start(400, b"application/json"), _body(b'{"error": {}}')]
    assert _call(OpenAIErrors(_app(*replica_error))) == replica_error


def test_every_response_names_its_replica():
    inner = _app(_start(200, b"application/json"), _body(b"{}"))
    inner.state = SimpleNamespace()
    start, _ = _call(ReplicaHeader(inner, "r1@node"))
    assert (REPLICA_HEADER.encode(), b"r1@node") in start["headers"]


def test_the_config_file_in_the_repository_is_a_valid_serve_config_for_this_app():
    from pathlib import Path

    import yaml
    from ray.serve.schema import ServeDeploySchema

    config = yaml.safe_load((Path(__file__).parent.parent / "deploy" / "ray-serve.yaml").read_text())
    schema = ServeDeploySchema.model_validate(config)
    app = schema.applications[0]
    assert app.import_path == "ovchat.server.ray_app:app_builder" and app.deployments[0].name == "ovchat"
    settings = from_serve_args(app.args)
    assert settings.ray.num_replicas == 2 and settings.ray.max_replicas_per_node == 1
    assert settings.ray.conversation_affinity is True
