"""`ovchat serve`: an OpenAI-compatible HTTP server over the engine's batching mode, its
stdlib-only client for the CLI, and a one-file chat page.

errors.py    the OpenAI error shape, built in one place
protocol.py  request/response shapes and validation
anthropic_request.py, anthropic.py  the Anthropic Messages API: requests rewritten as chat requests; Messages and events
serving.py   requests onto the engine: admission limits, streams read off the event loop, cancellation
metrics.py   Prometheus metrics (prometheus_client)
app.py       Starlette routes, API key, health, metrics, loading and shutdown
guard.py     the door: Host, Origin (CORS) and Content-Type checks before any route
drain.py     a body is read before any early answer, so every client sees a 413 (or 401, 403, 415)
cli.py       the `serve` subcommand (uvicorn)
client.py    the client `ovchat generate/chat --server URL` uses: standard library only
static/index.html  the chat page served at /

Nothing here is imported by ovchat.engine; the server uses only the engine's public API.
"""
