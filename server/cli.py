"""`ovchat serve`: the OpenAI-compatible server, on uvicorn, over the engine's batching mode
(in a supervised child process, engine/process.py; in this process with --in-process).

    ovchat serve                                  the default model on http://127.0.0.1:8000
    ovchat serve -m phi3-int4 --port 9000 --api-key "$KEY" --max-concurrency 8

Starlette and uvicorn are imported inside the handler (the `serve` extra), so other commands
need neither. Ctrl-C or SIGTERM: stop taking requests, give those in flight --shutdown-grace
seconds, cancel the rest (their streams end cleanly), close the engine, exit 0.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import signal
import sys
import threading

from ..engine.cli import add_model_flags, load_arguments
from ..engine.errors import EngineError


def register(sub) -> None:
    p = sub.add_parser("serve", help="an OpenAI-compatible HTTP server (continuous batching) with a chat page at /")
    add_model_flags(p)
    g = p.add_argument_group("server")
    g.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only)")
    g.add_argument("--port", type=int, default=8000, help="default: %(default)s")
    g.add_argument("--api-key", default=os.environ.get("OVCHAT_API_KEY"),
                   help="require 'Authorization: Bearer KEY' on every route but /health and / "
                        "(default: $OVCHAT_API_KEY; unset: no key)")
    g.add_argument("--allowed-hosts", default="", metavar="NAMES",
                   help="without --api-key, Host names answered besides loopback names and the bound address, "
                        "comma-separated: a proxy's name (exact, or '.example.com' for a domain; '*' for any)")
    g.add_argument("--allowed-origins", default="", metavar="ORIGINS",
                   help="web page origins (e.g. https://ui.example.com) allowed to call the API from a browser, "
                        "comma-separated, '*' for any; others are refused (default: only the page at /)")
    g.add_argument("--served-model-name", help="the model id clients send (default: the model folder's name)")
    g.add_argument("--max-concurrency", type=int, default=16,
                   help="generations run together, the engine's batch (default: %(default)s)")
    g.add_argument("--max-queue", type=int, default=64,
                   help="requests that may wait for a slot; more get a 429 (default: %(default)s)")
    g.add_argument("--max-body-mb", type=float, default=1.0, help="largest request body (default: %(default)s MB)")
    g.add_argument("--max-tokens", type=int, default=2048,
                   help="the most tokens one answer may have; a request asking more is clamped to it and its answer "
                        "ends with finish reason 'length' (default: %(default)s; 0: the room left in the context)")
    g.add_argument("--request-timeout", type=float, default=600.0, metavar="SECONDS",
                   help="a request's deadline from its arrival: past it, an answer ends with finish reason 'length' "
                        "and the text so far, a request still waiting for a slot gets a 503 (default: %(default)s; "
                        "0: none)")
    g.add_argument("--kv-cache-gb", type=int, default=0,
                   help="cap the KV cache at this many GB; a prompt that cannot fit gets a 400, requests beyond it "
                        "wait (default: 0, grown as needed)")
    g.add_argument("--shutdown-grace", type=float, default=5.0,
                   help="seconds in-flight requests get on Ctrl-C/SIGTERM before they are cancelled (default: %(default)s)")
    g.add_argument("--in-process", action="store_true",
                   help="run the engine in this process instead of a supervised child process (the default: "
                        "/health and /metrics answer during pipeline steps, an engine that dies is restarted "
                        "while the server stays up, and memory stays flatter under a long load); "
                        "docs/server.md")
    g.add_argument("--engine-process", action="store_true", help=argparse.SUPPRESS)  # the default now; kept for scripts
    g.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    from .ray_cli import add_flags as add_ray_flags
    add_ray_flags(p)
    p.set_defaults(func=cmd_serve)


def cmd_serve(args) -> int:
    if args.ray:
        from .ray_cli import serve_on_ray
        return serve_on_ray(args, *serve_settings(args))
    try:
        import uvicorn
        from .app import create_app
    except ImportError as error:
        raise EngineError(f"`ovchat serve` needs the serve extra ({error.name} is missing): "
                          "pip install 'ovchat[serve]'.") from None
    import logging

    config, batching = serve_settings(args)
    logging.basicConfig(format="%(levelname)s:     %(message)s", level=args.log_level.upper())

    server = None

    def stop_on_failure(message: str) -> None:
        server.should_exit = True

    # The engine's pipeline steps keep the GIL: in this process (--in-process) the event loop runs
    # only between steps (events reach it once per step, serving.py). In a child process the loop
    # never waits, and a child that dies is restarted (engine/process.py); measured as fast
    # (docs/server.md).
    from ..engine import Engine
    from ..engine.process import EngineProcess
    arguments = load_arguments(args)
    if args.in_process and args.engine_process:
        raise EngineError("--in-process and --engine-process contradict each other; pass one.")
    loader = Engine.load if args.in_process else EngineProcess.load
    load = functools.partial(loader, **arguments, batching=batching)
    where = "in this process" if args.in_process else "in an engine process"
    print(f"ovchat serve: loading {args.model or 'the default model'} on {args.device} {where}…", file=sys.stderr)
    app = create_app(load, config, on_load_failure=stop_on_failure)
    state = app.state.ovchat
    server = _graceful_server(uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level,
                                             timeout_graceful_shutdown=int(args.shutdown_grace) + 5),
                              on_stop=state.begin_shutdown)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not config.api_key:
        print(f"ovchat serve: listening on {args.host} with no --api-key: anyone who can reach it can use it.",
              file=sys.stderr)
    server.run()
    if state.load_error:
        raise EngineError(f"the server stopped: {state.load_error}")
    return 0


def serve_settings(args):
    """The ServerConfig and BatchOptions the flags ask for (checked)."""
    from ..engine import BatchOptions
    from .app import ServerConfig

    if args.max_concurrency < 1 or args.max_queue < 0 or not 0 <= args.port <= 65535:
        raise EngineError("--max-concurrency must be >= 1, --max-queue >= 0, --port in 0..65535.")
    if args.max_tokens < 0 or args.request_timeout < 0 or args.kv_cache_gb < 0:
        raise EngineError("--max-tokens, --request-timeout and --kv-cache-gb must be >= 0 (0: no bound).")
    config = ServerConfig(api_key=args.api_key or None, model_name=args.served_model_name,
                          max_concurrency=args.max_concurrency, max_queue=args.max_queue,
                          max_body_bytes=int(args.max_body_mb * 2**20), shutdown_grace_s=args.shutdown_grace,
                          max_tokens=args.max_tokens or None, request_timeout_s=args.request_timeout or None,
                          bind_host=args.host, allowed_hosts=_names(args.allowed_hosts),
                          allowed_origins=_names(args.allowed_origins))
    return config, BatchOptions(max_sequences=args.max_concurrency, kv_cache_gb=args.kv_cache_gb)


def _names(flag: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in flag.split(",") if name.strip())


def _graceful_server(config, on_stop):
    """A uvicorn.Server whose signal-asked stop drains the engine first (`on_stop`) and ends the
    process with 0: uvicorn itself re-raises the signal after its graceful stop (exit status -15)."""
    import uvicorn

    class GracefulServer(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            on_stop()
            super().handle_exit(sig, frame)

        @contextlib.contextmanager
        def capture_signals(self):
            if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
                yield
                return
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return GracefulServer(config)
