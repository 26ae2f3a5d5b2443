"""Read the rest of a request's body before answering it, so that every client sees the answer.

A server that answers before it has read the body (a 413 for a body over --max-body-mb, a 401,
a 415) and then closes the connection leaves unread bytes in its socket, and Linux answers them
with a reset, which can reach the client before it reads the answer: Python's urllib and
requests, httpx and the openai client send the whole body first, then read, and saw "connection
reset by peer" where curl (which waits for `100 Continue`) saw the 413. This middleware holds
the start of any answer until the body has been read to its end, up to `limit_bytes` and
`timeout_s` (beyond either, or when the declared length is over `limit_bytes`, the answer goes
out anyway, and such a client may still see the reset). A client that asked `Expect:
100-continue` and has not been told to go on has sent nothing: it is answered at once.
"""

from __future__ import annotations

import asyncio

DRAIN_LIMIT_BYTES = 64 << 20
DRAIN_TIMEOUT_S = 10.0


class DrainBody:
    """ASGI middleware: no answer starts before its request's body was read (within bounds)."""

    def __init__(self, app, limit_bytes: int = DRAIN_LIMIT_BYTES, timeout_s: float = DRAIN_TIMEOUT_S):
        self.app, self.limit_bytes, self.timeout_s = app, limit_bytes, timeout_s

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        waits_for_continue = headers.get(b"expect", b"").lower() == b"100-continue"
        declared = headers.get(b"content-length", b"")
        too_long_to_read = declared.isdigit() and int(declared) > self.limit_bytes
        body = {"ended": False, "started": False}

        async def tracked_receive():
            message = await receive()
            if message["type"] == "http.request":
                body["started"] = True
                body["ended"] = not message.get("more_body", False)
            elif message["type"] == "http.disconnect":
                body["ended"] = True
            return message

        async def drain() -> None:
            read = 0
            while not body["ended"] and read <= self.limit_bytes:
                read += len((await tracked_receive()).get("body", b""))

        async def send_after_the_body(message) -> None:
            if message["type"] == "http.response.start" and not body["ended"]:
                if not too_long_to_read and not (waits_for_continue and not body["started"]):
                    try:
                        await asyncio.wait_for(drain(), self.timeout_s)
                    except asyncio.TimeoutError:  # a client that sends too slowly: answer anyway
                        pass
            await send(message)

        await self.app(scope, tracked_receive, send_after_the_body)
