"""Deploy the OpenAI server on Ray Serve (server/ray_app.py) for a `ServerSettings` whose `ray` is
set, on a local Ray it starts or on a cluster it joins, and hold it until Ctrl-C or SIGTERM: what
`ovchat serve --ray` does once cli/serve.py has read its flags.

On Ctrl-C or SIGTERM it deletes the app (Ray stops routing to the replicas and lets their requests
finish, up to the deployment's graceful_shutdown_timeout_s) and, when it started Ray itself,
shuts Serve and Ray down, so no Ray process it started outlives it; then it returns.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Callable

from ..engine.errors import EngineError
from . import ray_tls
from .settings import ServerSettings

log = logging.getLogger("ovchat.server")
APP_NAME = "ovchat"
LOOPBACK_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": every Ray address on 127.0.0.1


def serve_on_ray(settings: ServerSettings, address: str | None = None,
                 report: Callable[[str], None] = log.info) -> None:
    """Deploy and serve until stopped. `address`: the Ray cluster to join ('auto', or the head's
    host:port); None starts a local Ray on this machine's loopback."""
    if settings.ray is None:
        raise EngineError("serve_on_ray needs settings with Ray's part (ServerSettings(ray=RaySettings(...))).")
    if address is None:
        # A Ray of our own on this machine speaks over the loopback only, as `ovchat serve` binds
        # 127.0.0.1 (Ray reads this before it starts: Linux would take the machine's outward address).
        os.environ.setdefault(LOOPBACK_ONLY_ENV, "0")
        # The one socket Ray opens beyond the loopback (a replica's gRPC server, on [::]) takes
        # only peers holding this run's certificate (server/ray_tls.py).
        credential = ray_tls.start()
    try:
        import ray
        from ray import serve
        from .ray_app import build
        from .ray_proxy import CALLBACK, CALLBACK_ENV, MODEL_HEADER_ENV
    except ImportError as error:
        raise EngineError(f"`ovchat serve --ray` needs the ray extra ({error.name} is missing): "
                          "pip install 'ovchat[ray]'.") from None

    # The proxies Ray starts here inherit this process's environment: give them the OpenAI errors.
    os.environ.setdefault(CALLBACK_ENV, CALLBACK)
    if settings.models is not None:  # and the body's model as Serve's multiplexed model id (ray_models.py)
        os.environ.setdefault(MODEL_HEADER_ENV, "1")
    started_here = address is None
    local = {"_node_ip_address": "127.0.0.1"} if started_here else {}
    ray.init(address=address or "local", include_dashboard=False, logging_level=settings.log_level.upper(),
             log_to_driver=settings.log_level == "debug", **local)
    # After ray.init: Ray's own SIGTERM handler (a stack dump, then abort) would end us with -6.
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        serve.start(http_options={"host": settings.host, "port": settings.port})
        where = "a local Ray" if started_here else f"the Ray cluster at {address}"
        what = (", ".join(m.name for m in settings.models.models) + f" (at most {settings.ray.max_num_models_per_replica} "
                "per replica)" if settings.models is not None else settings.model or "the default model")
        report(f"ovchat serve --ray: deploying {what} on {where}…")
        serve.run(build(settings), name=APP_NAME, route_prefix="/")
        report(f"ovchat serve --ray: http://{settings.host}:{settings.port}/v1 ({settings.ray.num_replicas} replica(s)); "
               "Ctrl-C to stop")
        stop.wait()
        report("ovchat serve --ray: draining…")
        serve.delete(APP_NAME)
        if started_here:
            serve.shutdown()
    finally:
        if started_here:
            ray.shutdown()
            credential.remove()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
