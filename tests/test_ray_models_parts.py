"""Several models on Ray Serve, its parts without a cluster (seconds): the proxy's model header,
the deployment's options and router, the settings and flags, and a replica's pool retiring what
Serve's multiplexing evicts (server/ray_models.py) on fake engines."""

import asyncio
import json
from types import SimpleNamespace

import pytest

pytest.importorskip("ray.serve", reason="the ray extra is not installed: pip install 'ovchat[ray]'")
pytestmark = pytest.mark.ray

from ovchat.engine.errors import OptionsError  # noqa: E402
from ovchat.server.model_settings import ModelSettings, ModelsSettings  # noqa: E402
from ovchat.server.protocol import APIError  # noqa: E402
from ovchat.server.ray_app import build, deployment_options  # noqa: E402
from ovchat.server.ray_models import ReplicaPool  # noqa: E402
from ovchat.server.ray_proxy import MODEL_HEADER, MODEL_HEADER_ENV, ModelHeader, OpenAIErrors, middlewares  # noqa: E402
from ovchat.server.settings import RaySettings, ServerSettings  # noqa: E402

MODELS = ModelsSettings((ModelSettings("a", None), ModelSettings("b", None)))


def _through_model_header(messages, headers=(), method="POST"):
    """(the headers the proxy's app saw, the body it read) for a request arriving as `messages`."""
    seen = {}
    incoming = list(messages)

    async def receive():
        return incoming.pop(0)

    async def app(scope, receive, send):
        seen["headers"] = scope["headers"]
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        seen["body"] = body

    async def send(message):
        pass

    asyncio.run(ModelHeader(app)({"type": "http", "method": method, "headers": list(headers)}, receive, send))
    return seen["headers"], seen["body"]


def test_the_proxy_names_the_bodys_model_in_the_multiplexing_header_and_passes_the_body_on():
    body = json.dumps({"model": "b", "messages": []}).encode()
    chunks = [{"type": "http.request", "body": body[:7], "more_body": True},
              {"type": "http.request", "body": body[7:], "more_body": False}]
    headers, seen = _through_model_header(chunks)
    assert (MODEL_HEADER, b"b") in headers and seen == body
    given = [(b"serve-multiplexed-model-id", b"a")]  # the client's own header wins (either spelling)
    headers, seen = _through_model_header([{"type": "http.request", "body": body}], given)
    assert headers == given and seen == body
    for raw in (b"not json", b'{"model": 3}', b"[]"):
        headers, seen = _through_model_header([{"type": "http.request", "body": raw}])
        assert headers == [] and seen == raw


def test_the_model_header_is_in_the_proxy_only_where_asked(monkeypatch):
    monkeypatch.delenv(MODEL_HEADER_ENV, raising=False)
    assert [m.cls for m in middlewares()] == [OpenAIErrors]  # one model: the proxy as before
    monkeypatch.setenv(MODEL_HEADER_ENV, "1")
    assert [m.cls for m in middlewares()] == [OpenAIErrors, ModelHeader]


def test_several_models_deploy_the_multiplexed_replica_routed_by_model():
    settings = ServerSettings(models=MODELS, ray=RaySettings(max_num_models_per_replica=2))
    config = deployment_options(settings)["request_router_config"]
    assert config.request_router_class.endswith("ConversationRouter")
    assert config.request_router_kwargs == {"multiplexed": True, "affinity": True}
    app = build(settings)
    assert app._bound_deployment.func_or_class.__name__ == "OvchatModelsReplica"
    pinned = ModelsSettings((ModelSettings("a", None, pinned=True), ModelSettings("b", None)))
    with pytest.raises(OptionsError, match="not for --ray"):
        build(ServerSettings(models=pinned, ray=RaySettings()))
    with pytest.raises(OptionsError, match="--models-per-replica"):
        RaySettings(max_num_models_per_replica=0)


def test_ovchat_serve_ray_takes_several_models_and_models_per_replica(tmp_path):
    from ovchat.cli.main import build_parser
    from ovchat.cli.serve import serve_settings
    from ovchat.engine.errors import EngineError

    def settings(*argv):
        return serve_settings(build_parser().parse_args(["serve", *argv]))

    many = settings("--ray", "-m", f"a={tmp_path}", "-m", f"b={tmp_path}", "--models-per-replica", "1")
    assert [m.name for m in many.models.models] == ["a", "b"] and many.ray.max_num_models_per_replica == 1
    assert settings("--ray", "-m", str(tmp_path)).models is None  # one model: the Ray app as before
    with pytest.raises(EngineError, match="--models-per-replica"):
        settings("--ray", "-m", f"a={tmp_path}", "-m", f"b={tmp_path}", "--models-max", "1")


class FakeServing:
    def __init__(self, name, closed):
        self.name, self.closed, self.busy, self.in_flight, self.engine = name, closed, False, 0, None

    def close(self):
        self.closed.append(self.name)


def test_a_replicas_pool_retires_what_serves_lru_evicts_never_a_busy_model():
    async def scenario():
        asked, closed = [], []

        async def multiplexed(name):
            asked.append(name)
            return await pool.hold(name)

        pool = ReplicaPool(MODELS, load=lambda model: model.name, make_serving=lambda m, _: FakeServing(m.name, closed),
                           multiplexed=multiplexed, timeout_s=10)
        with pytest.raises(APIError) as unknown:
            await pool.acquire("zz", None)
        assert unknown.value.status == 404 and asked == []  # Serve never hears of an unknown model
        await pool.acquire("a", None)
        assert asked == ["a"] and pool.models["a"].state == "loaded"
        pool.retire("a")  # Serve evicted a while its request runs: it stays until released
        assert pool.models["a"].state == "loaded"
        pool.release("a")
        await _settled(pool)
        assert pool.models["a"].state == "unloaded" and closed == ["a"]
        await pool.acquire("b", None)
        pool.release("b")
        pool.retire("b")  # idle: unloaded at once
        await _settled(pool)
        assert pool.models["b"].state == "unloaded" and closed == ["a", "b"]
        pool.close()

    asyncio.run(scenario())


async def _settled(pool, rounds: int = 200):
    for _ in range(rounds):  # the unload runs on a thread: bounded turns of the loop
        if all(m.state in ("loaded", "unloaded") for m in pool.models.values()):
            return
        await asyncio.sleep(0.01)
