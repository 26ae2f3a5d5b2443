"""The HTTP side of a server of several models (server/models.py holds the pool): which model a
request names, the model list, /health, and the admin routes that load and unload a model.

    POST /v1/models/{name}/load     POST /v1/models/{name}/unload     (behind the key)
    POST /models/load  {"model": name}   POST /models/unload {"model": name}   (llama-server's names)

A generation route's body is read once here for its `model` and `keep_alive` (ollama's extension
field: how long the model stays loaded after this request; 0 unloads it at once, -1 keeps it) and
kept on the request, so the route reads the same bytes again.
"""

from __future__ import annotations

import asyncio
import json

from starlette.requests import Request
from starlette.responses import JSONResponse

from . import protocol
from .models import _UNSET, ModelPool, keep_alive_seconds
from .serving import ENGINE_RETRY_AFTER_S


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, refused with a 413 past `limit` bytes (declared or sent). Read once:
    Starlette keeps it, so a later read (the route's, after the pool's) costs nothing."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise protocol.too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise protocol.too_large(limit)
    request._body = bytes(body)  # Starlette's own cache: request.stream() yields it again
    return request._body


async def requested(request: Request, limit: int) -> tuple[str | None, object]:
    """The body's `model` (None when it names none) and keep_alive in seconds (_UNSET when not
    given). The body stays readable by the route; one that is not JSON is the route's to refuse."""
    body = await read_body(request, limit)
    try:
        parsed = json.loads(body)
    except ValueError:
        return None, _UNSET
    if not isinstance(parsed, dict):
        return None, _UNSET
    model = parsed.get("model")
    keep_alive = keep_alive_seconds(parsed["keep_alive"]) if parsed.get("keep_alive") is not None else _UNSET
    return (model if isinstance(model, str) else None), keep_alive


async def acquire(pool: ModelPool, request: Request, limit: int, timeout_s: float | None):
    """The Serving of the model the request names, loaded, and the call that releases it."""
    name, keep_alive = await requested(request, limit)
    loop = asyncio.get_running_loop()
    serving = await pool.acquire(name, None if timeout_s is None else loop.time() + timeout_s)
    model = pool.get(name).name
    try:
        if stopped := serving.engine.stopped:  # its process restarting after a crash: say so
            raise protocol.unavailable(stopped, code="engine_stopped", retry_after_s=ENGINE_RETRY_AFTER_S)
        serving.check_open()
    except BaseException:
        pool.release(model)
        raise
    return serving, lambda: pool.release(model, keep_alive)


def models_response(pool: ModelPool, wanted: str | None) -> JSONResponse:
    """GET /v1/models (every servable model with its state) or /v1/models/{name}."""
    if wanted is None:
        return JSONResponse({"object": "list", "data": [pool.card(m) for m in pool.models.values()]})
    return JSONResponse(pool.card(pool.get(wanted)))


def health(pool: ModelPool, draining: bool) -> JSONResponse:
    """200 while every pinned model serves; the models' states, the failed ones named. Public:
    names and states only, never a path or an error's text."""
    states = {m.name: m.state for m in pool.models.values()}
    failed = [name for name, state in states.items() if state == "failed"]
    pinned = [m for m in pool.models.values() if m.settings.pinned]
    down = [m for m in pinned if m.state != "loaded" or m.serving.engine.stopped]
    if draining:
        status = "shutting_down"
    elif down:
        status = "load_failed" if any(m.state == "failed" for m in down) else \
            "engine_stopped" if any(m.state == "loaded" for m in down) else "loading"
    else:
        status = "ok"
    body = {"status": status, "ready": status == "ok", "model": pool.settings.default_name, "models": states,
            "failed": failed}
    return JSONResponse(body, status_code=200 if status == "ok" else 503,
                        headers=None if status == "ok" else {"Retry-After": "1"})


async def admin(pool: ModelPool, request: Request, action: str, timeout_s: float | None) -> JSONResponse:
    """Load or unload the model the path names (or, on llama-server's routes, the body's `model`)."""
    name = request.path_params.get("model")
    if name is None:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            raise protocol.bad_request("The body must be JSON: {\"model\": NAME}.") from None
        name = body.get("model") if isinstance(body, dict) else None
        if not isinstance(name, str):
            raise protocol.bad_request("Name the model: {\"model\": NAME}.", param="model")
    if action == "load":
        loop = asyncio.get_running_loop()
        model = await pool.load(name, None if timeout_s is None else loop.time() + timeout_s)
    else:
        model = await pool.unload(name)
    return JSONResponse({"success": True, **pool.card(model)})
