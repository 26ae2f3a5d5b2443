"""Run the OpenAI-compatible server on uvicorn for a `ServerSettings` (server/settings.py), until
Ctrl-C or SIGTERM: what `ovchat serve` does once cli/serve.py has read its flags.

The engine runs in batching mode, in a supervised child process (engine/process.py) unless
`settings.engine_process` is False. Starlette and uvicorn are imported here, on call (the `serve`
extra). On Ctrl-C or SIGTERM: stop taking requests, give those in flight
`settings.shutdown_grace_s`, cancel the rest (their streams end cleanly), close the engine,
return. What a user should read goes to `report` (the CLI prints it; the log by default).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import signal
import threading
from typing import Callable

from ..engine.errors import EngineError
from .settings import ServerSettings

log = logging.getLogger("ovchat.server")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def serve_http(settings: ServerSettings, report: Callable[[str], None] = log.info) -> None:
    """Serve until stopped; raises EngineError if the model could not be loaded."""
    try:
        import uvicorn
        from .app import create_app
    except ImportError as error:
        raise EngineError(f"`ovchat serve` needs the serve extra ({error.name} is missing): "
                          "pip install 'ovchat[serve]'.") from None
    server = None

    def stop_on_failure(message: str) -> None:
        server.should_exit = True

    # The engine's pipeline steps keep the GIL: in this process (engine_process=False) the event
    # loop runs only between steps (events reach it once per step, serving.py). In a child process
    # the loop never waits, and a child that dies is restarted (engine/process.py); measured as
    # fast (docs/server.md).
    from ..engine import Engine
    from ..engine.process import EngineProcess
    loader = EngineProcess.load if settings.engine_process else Engine.load
    where = "in an engine process" if settings.engine_process else "in this process"
    if settings.models is not None:  # several: each loaded on demand (server/models.py)
        load = functools.partial(_load_model, loader, settings)
        names = ", ".join(m.name + (" (pinned)" if m.pinned else "") for m in settings.models.models)
        report(f"ovchat serve: serving {names}, each loaded on demand {where.replace('an engine', 'its own engine')}…")
    else:
        load = functools.partial(loader, **settings.engine_arguments())
        report(f"ovchat serve: loading {settings.model or 'the default model'} on {settings.device} {where}…")
    app = create_app(load, settings, on_load_failure=stop_on_failure)
    state = app.state.ovchat
    server = _graceful_server(uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                                             timeout_graceful_shutdown=int(settings.shutdown_grace_s) + 5),
                              on_stop=state.begin_shutdown)
    if settings.host not in LOOPBACK_HOSTS and not settings.api_key:
        report(f"ovchat serve: listening on {settings.host} with no --api-key: anyone who can reach it can use it.")
    server.run()
    if state.load_error:
        raise EngineError(f"the server stopped: {state.load_error}")


def _load_model(loader, settings: ServerSettings, model):
    """One model of settings.models, loaded with its own engine options over the server's."""
    return loader(**settings.model_engine_arguments(model))


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
