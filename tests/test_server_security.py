"""The server's door, in the style of llama.cpp's server security tests: public and protected
routes, missing and wrong keys, a cross-site POST with text/plain, a foreign Host (DNS
rebinding), a foreign Origin, and the allowed ones passing. Fake engine: no model, seconds."""

import json
from pathlib import Path

import pytest

from server_harness import FakeEngine, request, running_server

pytest.importorskip("uvicorn")
pytestmark = pytest.mark.timeout(120)

CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
PUBLIC = [("GET", "/health", None), ("GET", "/", None)]
PROTECTED = [("GET", "/v1/models", None), ("GET", "/metrics", None), ("POST", "/v1/chat/completions", CHAT),
             ("POST", "/v1/completions", {"prompt": "x", "max_tokens": 2})]


@pytest.fixture(scope="module")
def open_server():
    """No key, on 127.0.0.1: the door is all there is."""
    with running_server(lambda: FakeEngine(), allowed_hosts=("proxy.example", ".corp.example"),
                        allowed_origins=("https://ui.example",)) as (url, _):
        yield url


@pytest.fixture(scope="module")
def keyed_server():
    with running_server(lambda: FakeEngine(), api_key="s3cret") as (url, _):
        yield url


def port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def refused(answer, status: int, code: str) -> None:
    got, body, _ = answer
    assert got == status, body
    assert set(body["error"]) == {"message", "type", "param", "code"} and body["error"]["code"] == code


def test_every_route_answers_a_plain_local_client(open_server):
    for method, path, body in PUBLIC + PROTECTED:
        assert request(open_server, method, path, body)[0] == 200, path
    for host in ("localhost", "127.0.0.1", "[::1]", "app.localhost", "127.0.0.2"):
        assert request(open_server, "GET", "/v1/models", headers={"Host": f"{host}:{port(open_server)}"})[0] == 200, host


def test_a_cross_site_post_that_is_not_json_is_refused(open_server):
    raw = json.dumps(CHAT).encode()
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""):
        refused(request(open_server, "POST", "/v1/chat/completions", raw, headers={"Content-Type": content_type}),
                415, "unsupported_media_type")
    ok = request(open_server, "POST", "/v1/chat/completions", raw, headers={"Content-Type": "application/json; charset=utf-8"})
    assert ok[0] == 200


def test_a_host_that_is_not_this_server_is_refused_dns_rebinding(open_server):
    for host in ("evil.example", "evil.example:%d" % port(open_server), "localhost.evil.example", "10.1.2.3", ""):
        for method, path, body in PUBLIC + PROTECTED:
            refused(request(open_server, method, path, body, headers={"Host": host}), 403, "host_not_allowed")
    for host in ("proxy.example", "PROXY.example:443", "chat.corp.example"):  # --allowed-hosts
        assert request(open_server, "POST", "/v1/chat/completions", CHAT, headers={"Host": host})[0] == 200, host
    refused(request(open_server, "GET", "/health", headers={"Host": "corp.example.evil"}), 403, "host_not_allowed")


def test_a_foreign_origin_is_refused_and_an_allowed_one_gets_cors(open_server):
    own = f"http://127.0.0.1:{port(open_server)}"
    for method, path, body in PUBLIC + PROTECTED:
        refused(request(open_server, method, path, body, headers={"Origin": "https://evil.example"}),
                403, "origin_not_allowed")
    refused(request(open_server, "POST", "/v1/chat/completions", CHAT, headers={"Origin": "null"}), 403,
            "origin_not_allowed")
    status, _, headers = request(open_server, "POST", "/v1/chat/completions", CHAT, headers={"Origin": own})
    assert status == 200 and "access-control-allow-origin" not in headers  # the page at /: same origin, no CORS needed
    status, _, headers = request(open_server, "POST", "/v1/chat/completions", CHAT, headers={"Origin": "https://ui.example"})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == "https://ui.example"
    status, _, headers = request(open_server, "OPTIONS", "/v1/chat/completions", headers={
        "Origin": "https://ui.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert status == 204 and "Authorization" in headers["Access-Control-Allow-Headers"]
    assert "POST" in headers["Access-Control-Allow-Methods"]
    refused(request(open_server, "OPTIONS", "/v1/chat/completions", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}), 403, "origin_not_allowed")


def test_a_key_guards_the_api_but_not_health_and_the_page(keyed_server):
    for method, path, body in PUBLIC:
        assert request(keyed_server, method, path, body)[0] == 200, path
    for method, path, body in PROTECTED:
        refused(request(keyed_server, method, path, body), 401, "invalid_api_key")
        for wrong in ("Bearer wrong", "Bearer s3cret2", "Basic s3cret", "s3cret", "Bearer "):
            refused(request(keyed_server, method, path, body, headers={"Authorization": wrong}), 401, "invalid_api_key")
        assert request(keyed_server, method, path, body, headers={"Authorization": "Bearer s3cret"})[0] == 200, path


def test_with_a_key_any_host_and_content_type_pass_but_not_a_foreign_origin(keyed_server):
    key = {"Authorization": "Bearer s3cret"}
    assert request(keyed_server, "GET", "/v1/models", headers={**key, "Host": "gpu-box.example:8000"})[0] == 200
    raw = json.dumps(CHAT).encode()
    assert request(keyed_server, "POST", "/v1/chat/completions", raw, headers={**key, "Content-Type": "text/plain"})[0] == 200
    refused(request(keyed_server, "GET", "/v1/models", headers={**key, "Origin": "https://evil.example"}), 403,
            "origin_not_allowed")


def test_health_says_ready_or_not_without_paths_or_error_text():
    def broken():
        raise RuntimeError("could not read /home/alice/secret-models/phi3/openvino_model.bin: truncated")
    with running_server(broken, wait_ready=False) as (url, _):
        from server_harness import wait_for
        assert wait_for(lambda: request(url, "GET", "/health")[0] == 503 and
                        request(url, "GET", "/health")[1]["status"] == "load_failed")
        status, body, _ = request(url, "GET", "/health")
        assert body == {"status": "load_failed", "ready": False}
    with running_server(lambda: FakeEngine()) as (url, _):
        status, body, _ = request(url, "GET", "/health")
        assert status == 200 and body["ready"] is True and "/" not in json.dumps(body)


def test_the_page_keeps_the_key_for_the_session_only():
    page = (Path(__file__).parent.parent / "server" / "static" / "index.html").read_text()
    assert "sessionStorage" in page and "localStorage" not in page.split("<script>")[1]


@pytest.mark.parametrize("bind, host, allowed", [
    ("127.0.0.1", "127.0.0.1:8000", True), ("127.0.0.1", "192.168.1.5:8000", False),
    ("192.168.1.5", "192.168.1.5:8000", True), ("192.168.1.5", "box.lan:8000", False),
    ("0.0.0.0", "192.168.1.5:8000", True), ("0.0.0.0", "[fe80::1]:8000", True), ("0.0.0.0", "box.lan", False),
    ("::", "localhost", True), ("127.0.0.1", "[::1", False),
])
def test_host_policy(bind, host, allowed):
    from ovchat.server.guard import DoorPolicy
    assert DoorPolicy(bind_host=bind).host_allowed(host) is allowed
