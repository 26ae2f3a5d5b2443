"""`ovchat serve`: its flags, read into one ServerSettings (server/settings.py), then served on
uvicorn (server/launch.py) or, with --ray, on Ray Serve (server/ray_launch.py).

    ovchat serve                                  the default model on http://127.0.0.1:8000
    ovchat serve -m phi3-int4 --port 9000 --api-key "$KEY" --max-concurrency 8
    ovchat serve --ray --replicas 2 --replica-cpus 1            a local Ray, two replicas
    ovchat serve --ray --ray-address auto --replicas-per-node 1 a running cluster, one replica per node

Starlette, uvicorn and Ray are imported when the command runs (the `serve` and `ray` extras), so
other commands need none of them. Ctrl-C or SIGTERM drains, stops and exits 0.
"""

from __future__ import annotations

import argparse
import logging
import os

from ..engine.errors import EngineError
from . import serve_models
from .flags import add_model_flags, load_arguments
from .runtime import progress


def register(sub) -> None:
    p = sub.add_parser("serve", help="an OpenAI-compatible HTTP server (continuous batching) with a chat page at /")
    add_model_flags(p, many=True)
    serve_models.add_flags(p)
    g = p.add_argument_group("server")
    g.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only)")
    g.add_argument("--port", type=int, default=8000, help="default: %(default)s")
    g.add_argument("--api-key", default=os.environ.get("OVCHAT_API_KEY"),
                   help="require 'Authorization: Bearer KEY' (or 'x-api-key: KEY') on every route but /health and / "
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
    g.add_argument("--reasoning-format", choices=["separated", "inline"], default="separated",
                   help="a thinking model's reasoning (Qwen 3, DeepSeek-R1 distills): 'separated' into "
                        "message.reasoning_content (delta.reasoning_content when streamed), or 'inline': left in the "
                        "content between its <think> markers (default: %(default)s)")
    g.add_argument("--in-process", action="store_true",
                   help="run the engine in this process instead of a supervised child process (the default: "
                        "/health and /metrics answer during pipeline steps, an engine that dies is restarted "
                        "while the server stays up, and memory stays flatter under a long load); "
                        "docs/server.md")
    g.add_argument("--engine-process", action="store_true", help=argparse.SUPPRESS)  # the default now; kept for scripts
    g.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    g = p.add_argument_group("stored responses (the Responses API's previous_response_id; docs/server.md)")
    g.add_argument("--no-store", action="store_true",
                   help="keep no responses: store defaults to false and store: true is a 400 (default: keep them, "
                        "as OpenAI's API does)")
    g.add_argument("--responses-db", metavar="PATH",
                   help="the SQLite file of stored responses (default: $OVCHAT_CACHE/responses.sqlite)")
    g.add_argument("--responses-max-count", type=int, default=10_000, metavar="N",
                   help="keep at most N responses; the oldest go first (default: %(default)s)")
    g.add_argument("--responses-max-age-days", type=float, default=30, metavar="DAYS",
                   help="a response older than this is gone (default: %(default)s, as OpenAI's)")
    _add_ray_flags(p)
    p.set_defaults(func=cmd_serve)


def _add_ray_flags(p) -> None:
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
    g.add_argument("--models-per-replica", type=int, default=3, metavar="N",
                   help="several models (-m NAME=PATH ...): each replica keeps at most N loaded, least recently used "
                        "evicted; requests go to a replica holding their model (Serve's multiplexing; default: %(default)s)")
    g.add_argument("--stream-coalesce-ms", type=float, default=250,
                   help="a stream's SSE events reach Ray's proxy at most once per this long, joined (each token waits "
                        "at most this long; the first is never held); 0: each event at once (default: %(default)s)")


def cmd_serve(args) -> int:
    settings = serve_settings(args)
    if settings.ray is not None:  # Ray sets up its own logging (log_level)
        from ..server.ray_launch import serve_on_ray
        serve_on_ray(settings, address=args.ray_address, report=progress)
    else:
        from ..engine.model import loadable
        from ..server.launch import serve_http
        loadable(settings.model)  # a model that cannot load (a GGUF genai's reader refuses) fails here, before the port opens
        logging.basicConfig(format="%(levelname)s:     %(message)s", level=settings.log_level.upper())
        serve_http(settings, report=progress)
    return 0


def serve_settings(args):
    """The ServerSettings the flags ask for (checked on construction: an OptionsError names the flag)."""
    from ..server.settings import RaySettings, ServerSettings

    if args.in_process and args.engine_process:
        raise EngineError("--in-process and --engine-process contradict each other; pass one.")
    engine = load_arguments(args)
    models = serve_models.models_settings(args, engine["device"])
    engine["model"] = None if models is not None or not args.model else args.model[0]
    if models is not None and args.served_model_name:
        raise EngineError("--served-model-name serves one model; with several, name each with -m NAME=PATH.")
    if models is not None and args.ray and (args.models_max is not None or args.models_memory_gb is not None):
        raise EngineError("with --ray, bound the models of each replica with --models-per-replica N "
                          "(Serve's multiplexing evicts the least recently used), not --models-max/--models-memory-gb.")
    ray = None
    if args.ray:
        if args.replicas != "auto" and not args.replicas.isdigit():
            raise EngineError(f"--replicas {args.replicas!r} must be a number or 'auto'.")
        ray = RaySettings(num_cpus=args.replica_cpus, num_replicas=args.replicas if args.replicas == "auto" else int(args.replicas),
                          min_replicas=args.min_replicas, max_replicas=args.max_replicas,
                          max_replicas_per_node=args.replicas_per_node, max_queued_requests=args.max_queued,
                          conversation_affinity=not args.no_affinity, stream_coalesce_ms=args.stream_coalesce_ms,
                          max_num_models_per_replica=args.models_per_replica)
    return ServerSettings(
        model=engine.pop("model"), device=engine.pop("device"), engine_options=engine,
        engine_process=not args.in_process, max_concurrency=args.max_concurrency, kv_cache_gb=args.kv_cache_gb,
        host=args.host, port=args.port, api_key=args.api_key or None, served_model_name=args.served_model_name,
        max_queue=args.max_queue, max_body_bytes=int(args.max_body_mb * 2**20),
        max_tokens=args.max_tokens or None, request_timeout_s=args.request_timeout or None,
        reasoning_format=args.reasoning_format,
        shutdown_grace_s=args.shutdown_grace, allowed_hosts=_names(args.allowed_hosts),
        allowed_origins=_names(args.allowed_origins), log_level=args.log_level, store_responses=not args.no_store,
        responses_db=args.responses_db, responses_max_count=args.responses_max_count,
        responses_max_age_days=args.responses_max_age_days, ray=ray, models=models)


def _names(flag: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in flag.split(",") if name.strip())
