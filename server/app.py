"""The HTTP layer: routes, API-key check, health, metrics, model loading and shutdown, on Starlette.

    app = create_app(lambda: Engine.load(batching=True), ServerSettings(api_key="..."))

The app starts answering at once and loads the model on a thread: /health says 503 until the
engine is ready, and API calls get a 503 "loading" error meanwhile. Every API error, whatever
raised it, leaves through `_error_response`: in the OpenAI shape (built in errors.py), or on the
Anthropic routes (/v1/messages...) in Anthropic's (anthropic.py). A client
that disconnects stops its request: while it waits for a slot or for a non-streamed answer (a
watcher on the ASGI receive channel), or mid-stream (the streaming response's own listener);
either way its Run is closed and the engine cancels the generations.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Callable

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..engine.events import End, Text, ToolCallDelta
from . import anthropic, model_routes, protocol, responses, responses_stored
from .drain import DrainBody
from .guard import Door
from .metrics import ServerMetrics
from .protocol import SSE_DONE, APIError, Reply, sse, usage
from .response_store import owner_of
from .serving import ENGINE_RETRY_AFTER_S, Run, Serving
from .settings import ServerSettings

log = logging.getLogger("ovchat.server")
PAGE = Path(__file__).parent / "static" / "index.html"
ANTHROPIC_PATHS = ("/v1/messages",)  # their errors leave in Anthropic's shape, whoever raised them
CLIENT_LEFT = 499  # nginx's "client closed request", for the metrics: nobody reads it


class ServerState:
    """What the routes share: the engine once loaded, or why it failed."""

    def __init__(self, config: ServerSettings):
        self.config = config
        self.metrics = ServerMetrics()
        self.serving: Serving | None = None
        self.load_error: str | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pool = None  # several models (config.models): a server/models.py ModelPool, made on the loop
        self.draining = False
        self.store = config.response_store()  # the Responses API's memory, or None (responses_stored.py)
        self.owner = owner_of(config.api_key)  # whose stored responses this server's requests see

    def load(self, load_engine: Callable, on_failure: Callable[[str], None] | None) -> None:
        try:
            engine = load_engine()
        except Exception as error:  # an EngineError, or anything the plugin raised: tell, then stop
            self.load_error = str(error)
            log.error("ovchat serve: could not load the model: %s", error)
            if on_failure:
                on_failure(self.load_error)
            return
        name = self.config.served_model_name or _model_name(engine)
        serving = Serving(engine, name, self.config.max_concurrency, self.config.max_queue, self.metrics,
                          max_tokens=self.config.max_tokens, timeout_s=self.config.request_timeout_s,
                          separate_reasoning=self.config.reasoning_format == "separated")
        self.loop.call_soon_threadsafe(setattr, self, "serving", serving)
        log.info("ovchat serve: %s ready (%s mode)", name, engine.mode)

    def ready(self) -> Serving:
        if self.serving is None:
            if self.load_error:
                raise protocol.unavailable(f"The model failed to load: {self.load_error}", code="load_failed", retry_after_s=60)
            raise protocol.unavailable("The model is loading; retry in a few seconds.", code="loading")
        stopped = self.serving.engine.stopped  # closed, failed, or its process restarting: say so
        if stopped:
            raise protocol.unavailable(stopped, code="engine_stopped", retry_after_s=ENGINE_RETRY_AFTER_S)
        self.serving.check_open()
        return self.serving

    def begin_shutdown(self) -> None:
        """Stop taking requests and cancel those in flight after the grace period (any thread)."""
        self.draining = True
        if self.pool is not None and self.loop is not None:  # no more loads
            self.loop.call_soon_threadsafe(setattr, self.pool, "closed", True)
        servings = self.pool.servings() if self.pool is not None else [self.serving]
        for serving in servings:
            if self.loop is not None and serving is not None:
                self.loop.call_soon_threadsafe(serving.drain, self.config.shutdown_grace_s)

    def make_pool(self, load_model: Callable, pool_class: Callable | None = None):
        """The pool of config.models; `load_model(model_settings)` loads one (on a thread).
        `pool_class`: a ModelPool subclass (server/ray_models.py: Serve's multiplexing decides)."""
        from .models import ModelPool
        config, metrics = self.config, self.metrics

        def make_serving(model, engine) -> Serving:
            return Serving(engine, model.name, config.model_concurrency(model), config.max_queue,
                           metrics.for_model(model.name), max_tokens=config.max_tokens, timeout_s=config.request_timeout_s)

        self.pool = (pool_class or ModelPool)(config.models, load_model, make_serving, kv_cache_gb=config.kv_cache_gb)
        for model in self.pool.models.values():
            metrics.model_loaded.labels(model.name).set_function(lambda m=model: m.state == "loaded")
            metrics.model_loads.labels(model.name).set_function(lambda m=model: m.loads)
            metrics.model_evictions.labels(model.name).set_function(lambda m=model: m.evictions)
        self.pool.start()


def _model_name(engine) -> str:
    path = Path(engine.info.path)
    return path.stem if path.suffix == ".gguf" else path.name


def create_app(load_engine: Callable, config: ServerSettings = ServerSettings(),
               on_load_failure: Callable[[str], None] | None = None, pool_class: Callable | None = None) -> Starlette:
    """The ASGI app, bounded and guarded as `config` says (its engine's settings are `load_engine`'s
    business). `load_engine()` runs on a thread at start-up and returns a loaded Engine; with
    `config.models` (several models), `load_engine(model_settings)` loads one, on demand."""
    state = ServerState(config)
    many = config.models is not None
    if many:
        state.metrics = ServerMetrics(per_model=True)

    @asynccontextmanager
    async def lifespan(app):
        state.loop = asyncio.get_running_loop()
        # anyio imports its asyncio backend on first use: here, not in a first stream's response,
        # where (a pipeline step keeping the GIL) its import took seconds while the engine ran.
        await anyio.sleep(0)
        if many:
            state.make_pool(load_engine, pool_class)
        else:
            threading.Thread(target=state.load, args=(load_engine, on_load_failure), name="ovchat-load",
                             daemon=True).start()
        yield
        for serving in state.pool.close() if many else [state.serving]:
            if serving is not None:
                await anyio.to_thread.run_sync(serving.close)
        if state.store is not None:
            state.store.close()

    def api(endpoint: str, needs_engine: bool = True, error_shape: Callable = APIError.body):
        """The common path of every API route: key, readiness, errors (in `error_shape`), the request counter."""
        def wrap(handler):
            async def route(request: Request) -> Response:
                release = None
                try:
                    _check_key(request, config.api_key)
                    if many and needs_engine:  # the body's model, loaded (server/model_routes.py)
                        serving, release = await model_routes.acquire(state.pool, request, config.max_body_bytes,
                                                                      config.request_timeout_s)
                    else:
                        serving = state.ready() if needs_engine else state.serving
                    response = await handler(request, serving)
                except APIError as error:
                    response = _error_response(error, error_shape)
                except Exception:  # a bug here must cost one request, never the server
                    log.exception("ovchat serve: %s failed", endpoint)
                    response = _error_response(protocol.server_error("The server failed on this request; see its log."),
                                               error_shape)
                finally:
                    if release is not None:  # a Run opened keeps the model busy until it closes
                        release()
                state.metrics.requests.labels(endpoint, str(response.status_code)).inc()
                return response
            return route
        return wrap

    @api("chat")
    async def chat_completions(request: Request, serving: Serving) -> Response:
        parsed = protocol.parse_chat(await _read_json(request, config.max_body_bytes), serving.max_concurrency)
        return await _unless_client_leaves(request, _generate(serving, parsed, parsed.messages, chat=True))

    @api("completions")
    async def completions(request: Request, serving: Serving) -> Response:
        parsed = protocol.parse_completion(await _read_json(request, config.max_body_bytes), serving.max_concurrency)
        return await _unless_client_leaves(request, _generate(serving, parsed, parsed.prompt, chat=False))

    @api("responses")
    async def responses_route(request: Request, serving: Serving) -> Response:
        parsed = await responses_stored.read_request(await _read_json(request, config.max_body_bytes),
                                                     serving.max_concurrency, state.store, state.owner)
        keep = responses_stored.keeper(state.store, state.owner, parsed)
        return await _unless_client_leaves(request, _respond(serving, parsed, keep))

    @api("responses", needs_engine=False)
    async def stored_response(request: Request, serving: Serving | None) -> Response:
        answer = responses_stored.delete if request.method == "DELETE" else responses_stored.retrieve
        if request.url.path.endswith("/input_items"):
            answer = responses_stored.input_items
        return JSONResponse(await answer(state.store, state.owner, request.path_params["response_id"],
                                         request.query_params))

    @api("messages", error_shape=anthropic.error_body)
    async def messages(request: Request, serving: Serving) -> Response:
        parsed = anthropic.parse_messages(await _read_json(request, config.max_body_bytes), serving.max_concurrency)
        return await _unless_client_leaves(request, _message(serving, parsed))

    @api("count_tokens", error_shape=anthropic.error_body)
    async def count_tokens(request: Request, serving: Serving) -> Response:
        body = await _read_json(request, config.max_body_bytes)
        parsed = anthropic.parse_messages(body, serving.max_concurrency, count_only=True)
        return await _unless_client_leaves(request, _count_tokens(serving, parsed))

    @api("models", needs_engine=not many)
    async def models(request: Request, serving: Serving) -> Response:
        wanted = request.path_params.get("model")
        if many:
            return model_routes.models_response(state.pool, wanted)
        card = _model_card(serving)
        if wanted is None:
            return JSONResponse({"object": "list", "data": [card]})
        if wanted != serving.model_name:
            raise protocol.model_not_found(wanted, serving.model_name)
        return JSONResponse(card)

    @api("metrics", needs_engine=False)
    async def metrics(request: Request, serving: Serving | None) -> Response:
        # The gauges ask the engine (another process): off the event loop.
        body = await anyio.to_thread.run_sync(state.metrics.render)
        return Response(body, media_type=state.metrics.content_type)

    @api("models", needs_engine=False)
    async def load_model(request: Request, serving: None) -> Response:
        return await model_routes.admin(state.pool, request, "load", config.request_timeout_s)

    @api("models", needs_engine=False)
    async def unload_model(request: Request, serving: None) -> Response:
        return await model_routes.admin(state.pool, request, "unload", config.request_timeout_s)

    async def health(request: Request) -> Response:
        # Public, even with a key: ready or not and why in one word, never a path or an error's text.
        if many:
            return model_routes.health(state.pool, state.draining)
        try:
            serving = state.ready()
        except APIError as error:
            return JSONResponse({"status": error.code, "ready": False}, status_code=503, headers=error.headers)
        return JSONResponse({"status": "ok", "ready": True, "model": serving.model_name, "mode": serving.engine.mode})

    async def page(request: Request) -> Response:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    async def http_error(request: Request, error: HTTPException) -> Response:
        shape = anthropic.error_body if request.url.path.startswith(ANTHROPIC_PATHS) else APIError.body
        if error.status_code == 404:
            return _error_response(protocol.not_found(request.url.path), shape)
        return _error_response(APIError(error.status_code, str(error.detail), code="http_error"), shape)

    routes = [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/responses", responses_route, methods=["POST"]),
        Route("/v1/messages", messages, methods=["POST"]),
        Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
        Route("/v1/responses/{response_id}", stored_response, methods=["GET", "DELETE"]),
        Route("/v1/responses/{response_id}/input_items", stored_response, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/models/{model:path}", models, methods=["GET"]),
        *([Route("/v1/models/{model:path}/load", load_model, methods=["POST"]),
           Route("/v1/models/{model:path}/unload", unload_model, methods=["POST"]),
           Route("/models/load", load_model, methods=["POST"]),  # llama-server's router names
           Route("/models/unload", unload_model, methods=["POST"])] if many else []),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/", page, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error},
                    middleware=[Middleware(DrainBody), Middleware(Door, policy=config.door(), anthropic_paths=ANTHROPIC_PATHS,
                                                                 anthropic_shape=anthropic.error_body)])
    app.state.ovchat = state
    return app


async def _generate(serving: Serving, parsed, prompt, chat: bool) -> Response:
    if parsed.model is not None and parsed.model != serving.model_name:
        raise protocol.model_not_found(parsed.model, serving.model_name)
    reply = Reply("chat" if chat else "completion", serving.model_name, parsed.sampling)
    run = await serving.open(prompt, parsed.sampling, chat)
    if parsed.sampling.stream:
        return _EventStream(_chunks(run, reply, chat, parsed.sampling.include_usage), run)
    try:
        choices = await run.collect()
    finally:
        run.close()
    return JSONResponse(reply.full(choices, run.prompt_tokens))


async def _respond(serving: Serving, parsed: responses.ResponsesRequest, keep=None) -> Response:
    """The Responses API: the chat request it was rewritten as, answered as a Response (kept by
    `keep` when the request stores it)."""
    chat = parsed.chat
    if chat.model is not None and chat.model != serving.model_name:
        raise protocol.model_not_found(chat.model, serving.model_name)
    builder = responses.ResponseBuilder(serving.model_name, parsed, keep)
    run = await serving.open(chat.messages, chat.sampling, True)
    if chat.sampling.stream:
        return _EventStream(responses.stream(builder, run), run)
    try:
        choice = (await run.collect())[0]
    finally:
        run.close()
    return JSONResponse(await builder.finished(builder.full(choice.text, choice.tool_calls, choice.tokens,
                                                            choice.finish_reason, run.prompt_tokens,
                                                            choice.completion_tokens, choice.reasoning,
                                                            choice.reasoning_tokens)))


async def _message(serving: Serving, parsed: anthropic.MessagesRequest) -> Response:
    """The Messages API: the chat request it was rewritten as, answered as an Anthropic Message."""
    chat = parsed.chat
    if chat.model is not None and chat.model != serving.model_name:
        raise protocol.model_not_found(chat.model, serving.model_name)
    builder = anthropic.MessageBuilder(serving.model_name, parsed)
    run = await serving.open(chat.messages, chat.sampling, True)
    if chat.sampling.stream:
        return _EventStream(anthropic.stream(builder, run), run)
    try:
        choice = (await run.collect())[0]
    finally:
        run.close()
    return JSONResponse(builder.full(choice.text, choice.tool_calls, choice.finish_reason, run.prompt_tokens,
                                     choice.completion_tokens, choice.reasoning))


async def _count_tokens(serving: Serving, parsed: anthropic.MessagesRequest) -> Response:
    """The prompt's tokens as the engine prepares it (template, tools and all): the request is
    started, counted once the engine took it, and cancelled before it generates."""
    chat = parsed.chat
    if chat.model is not None and chat.model != serving.model_name:
        raise protocol.model_not_found(chat.model, serving.model_name)
    run = await serving.open(chat.messages, chat.sampling, True)
    run.close()
    return JSONResponse({"input_tokens": run.prompt_tokens})


async def _chunks(run: Run, reply: Reply, chat: bool, include_usage: bool):
    """SSE as the OpenAI client reads it: each choice's role delta (chat), text and tool-call
    deltas, each choice's end with its finish_reason, the usage (its own chunk with
    include_usage, else on the last end), then [DONE]. A generation that fails mid-stream ends
    with an error event. Logprob tokens ride on the first chunk after them."""
    prompt_tokens = completion_tokens = reasoning_tokens = ended = 0
    tokens = [()] * run.n       # each choice's logprob tokens not sent yet (they precede their text)
    offsets = [0] * run.n       # characters of the tokens sent per choice: the completions' text_offset
    try:
        if chat:
            for index in range(run.n):
                yield reply.chunk(index, role=True)
        async for index, event in run.events():
            if isinstance(event, Text):
                tokens[index] += event.tokens
                if not event.text:
                    continue
                chunk = reply.chunk(index, text=event.text, tokens=tokens[index], text_offset=offsets[index],
                                    reasoning=event.reasoning)
            elif isinstance(event, ToolCallDelta):
                chunk = reply.chunk(index, tool_calls=[event], tokens=tokens[index], text_offset=offsets[index])
            elif tokens[index]:  # End, after tokens with no text of their own (end of turn)
                chunk = reply.chunk(index, tokens=tokens[index], text_offset=offsets[index])
            else:
                chunk = None
            if chunk is not None:
                offsets[index] += sum(len(token.text) for token in tokens[index])
                tokens[index] = ()
                yield chunk
            if isinstance(event, End):
                result = event.result
                prompt_tokens, completion_tokens, ended = (result.input_tokens, completion_tokens + result.output_tokens,
                                                           ended + 1)
                reasoning_tokens += result.reasoning_tokens
                counted = usage(prompt_tokens, completion_tokens, reasoning_tokens)
                yield reply.chunk(index, finish_reason=result.finish_reason,
                                  usage=counted if ended == run.n and not include_usage else None)
        if include_usage:
            yield reply.usage_chunk(usage(prompt_tokens, completion_tokens, reasoning_tokens))
    except APIError as error:
        yield sse(error.body())
    yield SSE_DONE


class _EventStream(StreamingResponse):
    """A streamed response that closes its Run however it ends: done, failed, or the client gone."""

    def __init__(self, chunks, run: Run):
        super().__init__(chunks, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._run = run

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._run.close()


async def _unless_client_leaves(request: Request, work) -> Response:
    """Await `work`, cancelling it if the client disconnects first (the body is already read)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_client_left(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if task.cancelled():
        return Response(status_code=CLIENT_LEFT)
    return task.result()


async def _client_left(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _read_json(request: Request, limit: int) -> dict:
    return protocol.parse_json(await model_routes.read_body(request, limit))


def _check_key(request: Request, api_key: str | None) -> None:
    """The key as OpenAI's clients send it (Authorization: Bearer) or Anthropic's (x-api-key)."""
    if api_key is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        given = request.headers.get("x-api-key", "")
    if not hmac.compare_digest(given.strip().encode(), api_key.encode()):
        raise protocol.unauthorized()


def _error_response(error: APIError, shape: Callable = APIError.body) -> JSONResponse:
    return JSONResponse(shape(error), status_code=error.status, headers=error.headers)


def _model_card(serving: Serving) -> dict:
    info = serving.engine.info
    return {"id": serving.model_name, "object": "model", "created": 0, "owned_by": "ovchat",
            "context_length": info.context_length, "architecture": info.architecture}
