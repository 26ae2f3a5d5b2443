"""OpenAI-shaped errors from Ray Serve's HTTP proxy, and streams that end cleanly when a replica dies.

A replica answers in the OpenAI error shape itself (server/app.py). Some answers come from Ray's
proxy instead, as plain text: backpressure (429 with Retry-After, past max_ongoing_requests and
max_queued_requests), a deployment with no replica (503), a replica that died before answering
(500, or nothing). And when a replica dies mid-stream (its node lost), the proxy just stops: the
client would read a stream cut short with no reason. This ASGI middleware, run in every proxy,
turns the first into OpenAI error bodies (status and Retry-After kept), and ends a stream cut
short with an error event and `data: [DONE]`, as `ovchat serve` ends a generation that fails.

Ray loads it from an environment variable that must be set where Ray starts (each node's
`ray start`, the RayService's container env); `ovchat serve --ray` sets it for the Ray it starts:

    RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=ovchat.server.ray_proxy:middlewares

With OVCHAT_RAY_MODEL_HEADER=1 there too (`ovchat serve --ray` with several models sets it), the
proxy also reads a POST's JSON body before routing and puts its `model` in the
`serve_multiplexed_model_id` header, which Serve's multiplexing routes by (ray_models.py): the
body is held (up to MODEL_BODY_LIMIT) and handed on unchanged. A request with the header keeps it.
"""

from __future__ import annotations

import json
import os

from starlette.middleware import Middleware

from .protocol import SSE_DONE, APIError, sse

CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
CALLBACK = "ovchat.server.ray_proxy:middlewares"
MODEL_HEADER_ENV = "OVCHAT_RAY_MODEL_HEADER"
MODEL_HEADER = b"serve_multiplexed_model_id"
MODEL_BODY_LIMIT = 8 << 20  # a larger body is passed on unread (its replica reads its model itself)
REPLICA_LOST = "The replica serving this request stopped (its node or process was lost); retry the request."


def middlewares() -> list:
    """The proxy callback Ray calls (see the module's docstring)."""
    if os.environ.get(MODEL_HEADER_ENV) == "1":
        return [Middleware(OpenAIErrors), Middleware(ModelHeader)]
    return [Middleware(OpenAIErrors)]


class ModelHeader:
    """The body's `model` as Serve's multiplexed model id header (see the module's docstring)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        headers = scope.get("headers", [])
        if (scope["type"] != "http" or scope.get("method") != "POST"
                or any(key.lower().replace(b"-", b"_") == MODEL_HEADER for key, _ in headers)):
            return await self.app(scope, receive, send)
        held, size, complete = [], 0, False
        while not complete and size <= MODEL_BODY_LIMIT:
            message = await receive()
            held.append(message)
            if message["type"] != "http.request":
                break  # the client left: hand that on
            size += len(message.get("body", b""))
            complete = not message.get("more_body", False)
        model = model_of(b"".join(m.get("body", b"") for m in held)) if complete else None
        if model:
            scope = {**scope, "headers": [*headers, (MODEL_HEADER, model.encode())]}

        async def replay():
            return held.pop(0) if held else await receive()

        await self.app(scope, replay, send)


def model_of(body: bytes) -> str | None:
    """A JSON body's `model`, if it names one (anything else: None, the replica answers it)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    model = parsed.get("model") if isinstance(parsed, dict) else None
    return model if isinstance(model, str) and model and model.isprintable() else None


def proxy_error(status: int, text: str) -> APIError:
    """One of the proxy's own plain-text errors, in the OpenAI shape."""
    if status == 429:
        return APIError(429, f"All replicas are busy and the queue is full ({text}); retry shortly.",
                        type="rate_limit_error", code="queue_full")
    if status == 503:
        return APIError(503, f"No replica can take the request now ({text}); retry shortly.",
                        type="server_error", code="unavailable")
    return APIError(status, text or REPLICA_LOST, type="server_error", code="replica_failed")


class OpenAIErrors:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        response = _Response(send)
        try:
            await self.app(scope, receive, response.send)
        except Exception:  # (cancellation, the client gone, is not ours to answer)
            pass
        await response.finish()


class _Response:
    """Watches the messages the proxy sends, holding back its own plain-text errors to reshape them."""

    def __init__(self, send):
        self._send = send
        self.started = self.ended = self.event_stream = False
        self._held: dict | None = None   # a plain-text error's start message
        self._held_body = b""

    async def send(self, message) -> None:
        if message["type"] == "http.response.start":
            headers = {key.lower(): value for key, value in message.get("headers", [])}
            content_type = headers.get(b"content-type", b"")
            if message["status"] >= 400 and not content_type.startswith(b"application/json"):
                self._held = message
                return
            self.started = True
            self.event_stream = content_type.startswith(b"text/event-stream")
        elif message["type"] == "http.response.body" and self._held is not None:
            self._held_body += message.get("body", b"")
            if not message.get("more_body", False):
                await self._reshape()
            return
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self.ended = True
        await self._send(message)

    async def _reshape(self) -> None:
        held, self._held = self._held, None
        keep = [(key, value) for key, value in held.get("headers", [])
                if key.lower() in (b"retry-after", b"x-request-id")]
        error = proxy_error(held["status"], self._held_body.decode("utf-8", "replace").strip())
        await self._json(error, keep)

    async def finish(self) -> None:
        """After the proxy is done: answer what it left unanswered, end what it left open."""
        if self.ended:
            return
        if self._held is not None:
            return await self._reshape()
        if not self.started:
            return await self._json(APIError(503, REPLICA_LOST, type="server_error", code="replica_failed"),
                                    [(b"retry-after", b"1")])
        tail = (sse(APIError(503, REPLICA_LOST, type="server_error", code="replica_failed").body()) + SSE_DONE
                if self.event_stream else b"")
        self.ended = True
        await self._send({"type": "http.response.body", "body": tail, "more_body": False})

    async def _json(self, error: APIError, headers: list) -> None:
        body = json.dumps(error.body()).encode()
        self.started = self.ended = True
        await self._send({"type": "http.response.start", "status": error.status,
                          "headers": [(b"content-type", b"application/json"),
                                      (b"content-length", str(len(body)).encode()), *headers]})
        await self._send({"type": "http.response.body", "body": body, "more_body": False})
