"""Fewer, larger body messages for a streamed response (SSE), each token delayed by a bounded time.

Behind Ray Serve every ASGI body message a replica sends is one item relayed to the proxy: a
hop between the replica's event loops, a pickle, a Ray object, the proxy's own ASGI send. A
streamed answer sends one SSE event per token, so that relay is paid per token. This ASGI
middleware sends an event stream's first two body messages at once (a chat stream's first holds
only the role, its second the first token: TTFT is untouched), and after that at most one body
message per `interval_s`: what arrives sooner waits, joined to what
follows, and goes out when the interval since the last send has passed (a timer, so a stream
that goes quiet still gets it) or with the response's last message. The bytes, their order
and the events are the same; a token is delayed by at most `interval_s`. Other responses pass
untouched.
"""

from __future__ import annotations

import asyncio


class CoalesceEventStream:
    def __init__(self, app, interval_s: float):
        self.app, self.interval_s = app, interval_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self.interval_s <= 0:
            return await self.app(scope, receive, send)
        stream = _Coalesced(send, self.interval_s)
        try:
            await self.app(scope, receive, stream.send)
        finally:
            await stream.close()


class _Coalesced:
    def __init__(self, send, interval_s: float):
        self._send, self._interval_s = send, interval_s
        self._loop = asyncio.get_running_loop()
        self._lock = asyncio.Lock()       # the timer's flush and the app's sends go out in order
        self._held: list[bytes] = []
        self._last_sent = float("-inf")
        self._timer: asyncio.TimerHandle | None = None
        self._event_stream = self._ended = False
        self._at_once = 2                 # body messages still to send at once

    async def send(self, message) -> None:
        if message["type"] == "http.response.start":
            headers = {key.lower(): value for key, value in message.get("headers", [])}
            self._event_stream = headers.get(b"content-type", b"").startswith(b"text/event-stream")
        elif message["type"] == "http.response.body" and self._event_stream:
            if message.get("more_body", False):
                return await self._body(message.get("body", b""))
            self._ended = True
            message = {**message, "body": self._take() + message.get("body", b"")}
        async with self._lock:
            await self._send(message)

    async def _body(self, body: bytes) -> None:
        now = self._loop.time()
        if not self._held and (self._at_once or now - self._last_sent >= self._interval_s):
            async with self._lock:
                self._at_once = max(0, self._at_once - 1)
                self._last_sent = now
                await self._send({"type": "http.response.body", "body": body, "more_body": True})
            return
        self._held.append(body)
        if self._timer is None:
            self._timer = self._loop.call_at(self._last_sent + self._interval_s, self._due)

    def _take(self) -> bytes:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        held, self._held = b"".join(self._held), []
        return held

    def _due(self) -> None:
        self._timer = None
        self._loop.create_task(self._flush_quietly())

    async def _flush_quietly(self) -> None:
        try:
            await self.flush()
        except Exception:  # the response can no longer be sent to (the client left): nothing to tell
            pass

    async def flush(self) -> None:
        async with self._lock:
            body = self._take()
            if body and not self._ended:
                self._last_sent = self._loop.time()
                await self._send({"type": "http.response.body", "body": body, "more_body": True})

    async def close(self) -> None:
        """The app is done (or failed): what is still held goes out, unless the client is gone;
        no timer outlives the response."""
        try:
            if self._held and not self._ended:
                await self._flush_quietly()
        finally:
            self._take()
