"""The door: which requests reach the routes at all, checked before any route runs (ASGI middleware).

A server on 127.0.0.1 without --api-key is reachable by every web page the user's browser opens,
so, as llama.cpp's and vLLM's servers learned:

- Without a key, a POST must say `Content-Type: application/json` (else 415): a page can send a
  cross-site "simple" POST (text/plain, a form) without asking the server first, never a JSON one.
- Without a key, the Host header must name this server: a loopback name (localhost, 127.x.x.x,
  ::1), the address it is bound to (any IP address when bound to all of them), or one of
  --allowed-hosts (a proxy's name; `*` allows any). Else 403: DNS rebinding (a page whose name
  now resolves to 127.0.0.1) reaches the server under its own name, never under ours.
- With or without a key, a browser's request from another site (an `Origin` that is not this
  server) is refused with a 403 unless --allowed-origins lists it; an allowed origin gets CORS
  headers (and its preflight an answer), so its page can read the answers.

With a key the first two are not needed: a page can neither send nor learn the key. Refusals
leave in the OpenAI error shape, like every other error (on the Anthropic routes, in Anthropic's).
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass

from .protocol import APIError

LOOPBACK_NAMES = ("localhost",)
WILDCARD_BINDS = ("0.0.0.0", "::", "")
CORS_HEADERS = [(b"access-control-allow-methods", b"GET, POST, OPTIONS"),
                (b"access-control-allow-headers", b"Authorization, Content-Type, x-api-key, anthropic-version"),
                (b"access-control-max-age", b"600")]


@dataclass(frozen=True)
class DoorPolicy:
    bind_host: str = "127.0.0.1"               # the address the server listens on (--host)
    allowed_hosts: tuple[str, ...] = ()         # more Host names: exact, ".suffix" for a domain, or "*"
    allowed_origins: tuple[str, ...] = ()       # origins whose pages may call the API, or "*"
    keyed: bool = False                         # an API key guards the API

    def host_allowed(self, host_header: str) -> bool:
        name = _host_name(host_header)
        if name is None:
            return False
        if "*" in self.allowed_hosts or _is_loopback(name) or name == self.bind_host.strip("[]").lower():
            return True
        if self.bind_host in WILDCARD_BINDS and _is_ip(name):
            return True
        return any(name == allowed.lower() or (allowed.startswith(".") and name.endswith(allowed.lower()))
                   for allowed in self.allowed_hosts)

    def origin_allowed(self, origin: str, host_header: str) -> bool:
        return same_origin(origin, host_header) or "*" in self.allowed_origins or \
            origin.rstrip("/") in (o.rstrip("/") for o in self.allowed_origins)


def same_origin(origin: str, host_header: str) -> bool:
    """Whether a browser's Origin is this server's own (the page at /)."""
    scheme, _, rest = origin.partition("://")
    return scheme in ("http", "https") and rest.lower() == host_header.lower()


def _host_name(host_header: str) -> str | None:
    """'Example.com:8000' -> 'example.com'; '[::1]:8000' -> '::1'; None if malformed."""
    host = host_header.strip().lower()
    if host.startswith("["):
        name, sep, _ = host[1:].partition("]")
        return name if sep else None
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name or None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _is_loopback(name: str) -> bool:
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):  # browsers resolve *.localhost to loopback
        return True
    return _is_ip(name) and ipaddress.ip_address(name).is_loopback


class Door:
    """ASGI middleware that applies a DoorPolicy to every HTTP request."""

    def __init__(self, app, policy: DoorPolicy, anthropic_paths: tuple = (), anthropic_shape=None):
        self.app, self.policy = app, policy
        self._anthropic = anthropic_paths, anthropic_shape

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        host, origin = headers.get("host", ""), headers.get("origin")
        refusal = self._refusal(scope["method"], host, origin, headers.get("content-type", ""))
        if refusal is not None:
            paths, shape = self._anthropic
            body = shape(refusal) if paths and scope["path"].startswith(paths) else refusal.body()
            return await _answer(send, refusal, body)
        if origin is None or same_origin(origin, host):  # not a cross-site call: no CORS to add
            return await self.app(scope, receive, send)
        cors = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:  # a preflight
            await send({"type": "http.response.start", "status": 204, "headers": cors + CORS_HEADERS})
            return await send({"type": "http.response.body", "body": b""})

        async def send_with_cors(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *cors]}
            await send(message)
        await self.app(scope, receive, send_with_cors)

    def _refusal(self, method: str, host: str, origin: str | None, content_type: str) -> APIError | None:
        policy = self.policy
        if not policy.keyed and not policy.host_allowed(host):
            return APIError(403, f"The Host header {host!r} does not name this server; a proxy's name must be "
                                 "allowed with `ovchat serve --allowed-hosts NAME`.", type="permission_error",
                            code="host_not_allowed")
        if origin is not None and not policy.origin_allowed(origin, host):
            return APIError(403, f"Requests from the web page origin {origin!r} are refused; allow it with "
                                 "`ovchat serve --allowed-origins ORIGIN`.", type="permission_error",
                            code="origin_not_allowed")
        media_type = content_type.split(";")[0].strip().lower()
        if not policy.keyed and method == "POST" and media_type != "application/json":
            return APIError(415, f"A POST must send 'Content-Type: application/json' (got {content_type or 'none'!r}).",
                            code="unsupported_media_type")
        return None


async def _answer(send, error: APIError, body: dict) -> None:
    body = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": error.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
