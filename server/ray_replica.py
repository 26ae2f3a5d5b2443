"""What both Ray Serve replicas share (ray_app.py: one model; ray_models.py: several): the
deployment's name, and each answer naming the replica that served it."""

from __future__ import annotations

import os

import ray
from ray import serve

REPLICA_HEADER = "x-ovchat-replica"
DEPLOYMENT = "ovchat"


def replica_name() -> str:
    """This replica's name in answers: replica@host/Ray node."""
    context, node = serve.get_replica_context(), ray.get_runtime_context().get_node_id()
    return f"{context.replica_id.unique_id}@{os.uname().nodename}/{node[:12]}"


class ReplicaHeader:
    """ASGI middleware: every response names the replica that served it."""

    def __init__(self, app, name: str, state=None):
        self.app, self.header = app, (REPLICA_HEADER.encode(), name.encode())
        self.state = app.state if state is None else state  # Ray's ingress wrapper and the tests read the Starlette app's state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def named(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), self.header]}
            await send(message)

        await self.app(scope, receive, named)
