"""`ovchat serve --ray`: deploy the OpenAI server on Ray Serve (server/ray_app.py), on a local Ray
it starts or on a cluster it joins (--ray-address), and hold it until Ctrl-C or SIGTERM.

    ovchat serve --ray --replicas 2 --replica-cpus 1            a local Ray, two replicas
    ovchat serve --ray --ray-address auto --replicas-per-node 1 a running cluster, one replica per node

On Ctrl-C or SIGTERM it deletes the app (Ray stops routing to the replicas and lets their requests
finish, up to the deployment's graceful_shutdown_timeout_s) and, when it started Ray itself,
shuts Serve and Ray down, so no Ray process it started outlives it; then it exits 0.
"""

from __future__ import annotations

import os
import signal
from dataclasses import asdict
import sys
import threading

from ..engine.cli import load_arguments
from ..engine.errors import EngineError
from . import ray_tls

APP_NAME = "ovchat"


def add_flags(p) -> None:
    g = p.add_argument_group("Ray Serve (the ray extra: pip install 'ovchat[ray]'; README, 'Ray Serve')")
    g.add_argument("--ray", action="store_true", help="serve through Ray Serve: replicas over a Ray cluster")
    g.add_argument("--ray-address", metavar="ADDRESS",
                   help="join this Ray cluster ('auto', or the head's host:port) instead of starting a local Ray")
    g.add_argument("--replicas", default="1",
                   help="replicas, or 'auto': autoscale between --min-replicas and --max-replicas (default: %(default)s)")
    g.add_argument("--min-replicas", type=int, default=1, help="autoscaling's floor (default: %(default)s)")
    g.add_argument("--max-replicas", type=int, default=4, help="autoscaling's ceiling (default: %(default)s)")
    g.add_argument("--replica-cpus", type=float, default=1,
                   help="CPUs each replica asks Ray for; also its OpenVINO inference threads (default: %(default)s)")
    g.add_argument("--replicas-per-node", type=int, help="at most this many replicas on one node (1: spread them)")
    g.add_argument("--max-queued", type=int, default=64,
                   help="requests each Ray proxy holds when every replica is full; more get a 429 (default: %(default)s)")
    g.add_argument("--no-affinity", action="store_true",
                   help="route turns of one conversation (X-Session-ID) like any request, not to its replica")
    g.add_argument("--stream-coalesce-ms", type=float, default=250,
                   help="a stream's SSE events reach Ray's proxy at most once per this long, joined (each token waits "
                        "at most this long; the first is never held); 0: each event at once (default: %(default)s)")


LOOPBACK_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": every Ray address on 127.0.0.1


def serve_on_ray(args, config, batching) -> int:
    """Deploy with `ovchat serve`'s flags: `config` and `batching` are its checked ServerConfig and
    BatchOptions (server/cli.py's serve_settings)."""
    if args.ray_address is None:
        # A Ray of our own on this machine speaks over the loopback only, as `ovchat serve` binds
        # 127.0.0.1 (Ray reads this before it starts: Linux would take the machine's outward address).
        os.environ.setdefault(LOOPBACK_ONLY_ENV, "0")
        # The one socket Ray opens beyond the loopback (a replica's gRPC server, on [::]) takes
        # only peers holding this run's certificate (server/ray_tls.py).
        credential = ray_tls.start()
    try:
        import ray
        from ray import serve
        from .ray_app import RayAppOptions, build
        from .ray_proxy import CALLBACK, CALLBACK_ENV
    except ImportError as error:
        raise EngineError(f"`ovchat serve --ray` needs the ray extra ({error.name} is missing): "
                          "pip install 'ovchat[ray]'.") from None
    if args.replicas != "auto" and not args.replicas.isdigit():
        raise EngineError(f"--replicas {args.replicas!r} must be a number or 'auto'.")
    server = {key: value for key, value in asdict(config).items()
              if key not in ("api_key", "model_name", "max_concurrency", "max_queue", "shutdown_grace_s")}
    engine_options = load_arguments(args)
    options = RayAppOptions(server=server, kv_cache_gb=batching.kv_cache_gb,
        model=engine_options.pop("model"), device=engine_options.pop("device"), engine_options=engine_options,
        served_model_name=args.served_model_name, api_key=args.api_key or None, num_cpus=args.replica_cpus,
        num_replicas=args.replicas if args.replicas == "auto" else int(args.replicas),
        min_replicas=args.min_replicas, max_replicas=args.max_replicas, max_replicas_per_node=args.replicas_per_node,
        max_concurrency=args.max_concurrency, max_queued_requests=args.max_queued,
        conversation_affinity=not args.no_affinity, shutdown_grace_s=args.shutdown_grace,
        stream_coalesce_ms=args.stream_coalesce_ms, engine_process=not args.in_process)

    # The proxies Ray starts here inherit this process's environment: give them the OpenAI errors.
    os.environ.setdefault(CALLBACK_ENV, CALLBACK)
    started_here = args.ray_address is None
    local = {"_node_ip_address": "127.0.0.1"} if started_here else {}
    ray.init(address=args.ray_address or "local", include_dashboard=False, logging_level=args.log_level.upper(),
             log_to_driver=args.log_level == "debug", **local)
    # After ray.init: Ray's own SIGTERM handler (a stack dump, then abort) would end us with -6.
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        where = "a local Ray" if started_here else f"the Ray cluster at {args.ray_address}"
        print(f"ovchat serve --ray: deploying {args.model or 'the default model'} on {where}…", file=sys.stderr)
        serve.run(build(options), name=APP_NAME, route_prefix="/")
        print(f"ovchat serve --ray: http://{args.host}:{args.port}/v1 ({options.num_replicas} replica(s)); "
              "Ctrl-C to stop", file=sys.stderr, flush=True)
        stop.wait()
        print("ovchat serve --ray: draining…", file=sys.stderr, flush=True)
        serve.delete(APP_NAME)
        if started_here:
            serve.shutdown()
    finally:
        if started_here:
            ray.shutdown()
            credential.remove()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0

