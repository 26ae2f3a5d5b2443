"""Ray Serve against `ovchat serve`, side by side in one run (issue 19, points 7 and 4).

    flock /tmp/ovchat-bench.lock python -m studies.ray_serve [--model M] [--out DIR]

1. Overhead: `ovchat serve` (a subprocess, all cores) against one Ray Serve replica asking for
   the same cores (num_cpus = the machine's), at 1 and 16 concurrent streams: TTFT p50 and
   aggregate tokens/s (benchmarks/server_load.py's closed loop, fresh prompts, EOS ignored).
   `--cores N` gives both engines N cores (INFERENCE_NUM_THREADS, num_cpus) and Ray the rest.
2. Scaling: two replicas of one CPU against one replica of one CPU, 16 streams.
3. Conversation-affine routing: at two replicas of one CPU, chats of 6 turns over a long system
   prompt; the 6th turn's TTFT with the conversation named (X-Session-ID: its replica holds the
   prefix in its KV cache) and without (Ray's default routing: power of two choices).

`--parts` picks among the three; each `--variant` measures part 1 once more, side by side, with
other app options or Ray settings (`--variant in-process=engine_process:false`); `RAY_USE_TLS:1`
without certificate paths makes this Ray's credential as `ovchat serve --ray` does (server/ray_tls.py).
Ray runs locally (ray.init(address="local")), every address on 127.0.0.1. Prints a table, writes
ray_serve.json, and ends with one JSON line. Load averages are recorded at every step.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from ovchat.benchmarks.machine import load_average, machine_info
from ovchat.benchmarks.server_launch import ServerSpec, free_port, launched
from ovchat.benchmarks.server_load import make_prompt, run_load, sse_events


def server_processes() -> dict:
    """This benchmark's server processes by role (its children: `ovchat serve`, or the local Ray's).
    An engine process (engine/process.py's child) is its starter's role + "_engine": the rest of
    the CPU is the serving and relaying of the tokens."""
    import psutil
    groups: dict[str, list] = {}
    for process in psutil.Process().children(recursive=True):
        try:
            engine = "process_child" in " ".join(process.cmdline())
            owner = process.parent() if engine else process
            name = " ".join(owner.cmdline()) or owner.name()
        except (psutil.Error, AttributeError):
            continue
        role = ("proxy" if "ProxyActor" in name else "replicas" if "ServeReplica" in name
                else "ovchat_serve" if " serve -m " in name else "ray_other")
        groups.setdefault(role + "_engine" * engine, []).append(process)
    return groups


def cpu_seconds(groups: dict) -> dict:
    import psutil
    totals = {}
    for role, processes in groups.items():
        total = 0.0
        for process in processes:
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                pass
        totals[role] = total
    return totals


def load_figures(url: str, concurrency: int, requests: int, max_tokens: int, seed: int, model: str) -> dict:
    """The load's TTFT and tokens/s, and the CPU time each server process spent per output token:
    unlike wall times, CPU per token hardly depends on what else runs on the machine."""
    prompts = [make_prompt(40, seed + i) for i in range(requests)]
    groups = server_processes()
    before = cpu_seconds(groups)
    result = run_load(url, prompts, concurrency, max_tokens, model=model, extra_fields={"ignore_eos": True})
    after = cpu_seconds(groups)
    tokens = max(result.output_tokens, 1)
    return {"concurrency": concurrency, "requests": requests, "failed": result.failed,
            "ttft_ms_p50": result.ttft_ms_p50, "tpot_ms_p50": result.tpot_ms_p50,
            "tokens_per_s": round(result.aggregate_tokens_per_s, 1),
            "output_tokens": result.output_tokens,
            "cpu_ms_per_token": {role: round((after[role] - before[role]) * 1000 / tokens, 3) for role in after},
            "load_average": load_average()}


def measure(url: str, model: str, loads: list[tuple[int, int]], max_tokens: int, seed: int) -> dict:
    load_figures(url, 2, 2, 8, seed - 1000, model)  # warm-up
    return {f"{c}_streams": load_figures(url, c, n, max_tokens, seed + 100 * c, model) for c, n in loads}


def chat_turn(url: str, messages: list, session: str | None, max_tokens: int) -> tuple[float, str]:
    """(TTFT ms, answer) of one streamed chat turn."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
    headers = {"Content-Type": "application/json", **({"X-Session-ID": session} if session else {})}
    body = {"messages": messages, "max_tokens": max_tokens, "stream": True, "ignore_eos": True}
    start = time.perf_counter()
    first, text = None, ""
    try:
        connection.request("POST", "/v1/chat/completions", json.dumps(body), headers)
        response = connection.getresponse()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {response.read(500)!r}")
        for event in sse_events(response):
            if event == "[DONE]":
                break
            for choice in json.loads(event).get("choices", []):
                piece = choice["delta"].get("content") or ""
                if piece and first is None:
                    first = time.perf_counter()
                text += piece
    finally:
        connection.close()
    return (first - start) * 1000, text


def sixth_turn_ttft(url: str, conversations: int, named: bool, system_words: int, seed: int) -> dict:
    """Chats of 6 turns over a long system prompt; the 6th turn's TTFT, per chat."""
    ttfts = []
    for c in range(conversations):
        messages = [{"role": "system", "content": make_prompt(system_words, seed + c)}]
        for turn in range(6):
            messages.append({"role": "user", "content": f"Question {turn + 1}: say something about {make_prompt(6, turn)}."})
            ttft, answer = chat_turn(url, messages, f"chat-{seed}-{c}" if named else None, max_tokens=24)
            messages.append({"role": "assistant", "content": answer})
        ttfts.append(round(ttft, 1))
    return {"named": named, "turn6_ttft_ms": ttfts, "turn6_ttft_ms_median": statistics.median(ttfts),
            "load_average": load_average()}


def parse_variant(text: str) -> tuple[str, dict, dict]:
    """'name=key:value,KEY:value' -> (name, the Ray app's arguments (server/settings.py), Ray's environment)."""
    from ovchat.server.settings import from_serve_args
    label, _, spec = text.partition("=")
    options, env = {}, {}
    for item in filter(None, spec.split(",")):
        key, _, value = item.partition(":")
        if key.isupper():
            env[key] = value
        else:
            options[key] = value
    from_serve_args(options)  # an unknown name or a bad value fails here, before any run
    return label, options, env


_ray_env_set: dict = {}
_credentials: list = []


def start_ray(cores: int, env: dict, restart: bool) -> str:
    """A local Ray (its processes inherit `env`) with Serve on 127.0.0.1; its URL."""
    import ray
    from ray import serve
    if restart:
        stop_ray()
    for key in list(_ray_env_set):
        os.environ.pop(key) if _ray_env_set[key] is None else os.environ.__setitem__(key, _ray_env_set[key])
    _ray_env_set.clear()
    env = dict(env)
    if env.get("RAY_USE_TLS") == "1" and "RAY_TLS_CA_CERT" not in env:
        from ovchat.server import ray_tls
        del env["RAY_USE_TLS"]
        _credentials.append(ray_tls.start())
    for key, value in env.items():
        _ray_env_set[key] = os.environ.get(key)
        os.environ[key] = value
    ray._raylet.Config.initialize("")  # this process's Ray re-reads the variables (RAY_USE_TLS) as at its first start
    ray.init(address="local", num_cpus=cores, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    return f"http://127.0.0.1:{port}"


def stop_ray() -> None:
    import ray
    from ray import serve
    if ray.is_initialized():
        serve.shutdown()
        ray.shutdown()
    while _credentials:
        _credentials.pop().remove()


def deploy(serve, build, options) -> str:
    start = time.monotonic()
    serve.run(build(options), name="ovchat", route_prefix="/")
    return f"{time.monotonic() - start:.1f} s"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", help="default: the embedded default model")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--requests", type=int, default=48, help="requests per 16-stream load (default: %(default)s)")
    p.add_argument("--conversations", type=int, default=6)
    p.add_argument("--system-words", type=int, default=600, help="the chats' system prompt (~1.3 tokens a word)")
    p.add_argument("--out", default="studies/results/ray-serve")
    p.add_argument("--cores", type=int, help="part 1's cores: ovchat serve's inference threads and the replica's "
                   "num_cpus (default: the machine's). Fewer than the machine's leave Ray's proxy and processes "
                   "cores of their own, as a replica's num_cpus does on a larger machine")
    p.add_argument("--parts", default="overhead,scaling,affinity",
                   help="comma-separated: overhead, scaling, affinity (default: %(default)s)")
    p.add_argument("--variant", action="append", metavar="NAME=SPEC",
                   help="part 1 once more per variant, side by side: SPEC is comma-separated key:value, the Ray app's "
                        "arguments in lower case (engine_process:false, stream_coalesce_ms:50), environment variables of "
                        "Ray's processes in upper case (a fresh local Ray). The first variant also runs parts 2 and 3. "
                        "Default: one, 'default='")
    args = p.parse_args(argv)
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray over the loopback only (read at import)
    import ray
    from ray import serve
    from ovchat.engine.model import resolve
    from ovchat.server.ray_app import build
    from ovchat.server.settings import from_serve_args as settings
    from ovchat.server.ray_proxy import CALLBACK, CALLBACK_ENV

    model_path = str(resolve(args.model).path)
    name = Path(model_path).name
    machine_cores = len(os.sched_getaffinity(0))
    cores = args.cores or machine_cores
    loads = [(1, 8), (16, args.requests)]
    report = {"machine": machine_info(), "model": model_path, "max_tokens": args.max_tokens, "cores": cores,
              "machine_cores": machine_cores,
              "variants": args.variant, "parts": args.parts, "load_average_start": load_average()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    # 1a. ovchat serve on `cores` inference threads.
    threads = [] if cores == machine_cores else ["-P", f"INFERENCE_NUM_THREADS={cores}"]
    spec = ServerSpec("ovchat serve", [sys.executable, "-c", "from ovchat.cli.main import main; raise SystemExit(main())",
                                       "serve", "-m", model_path, "--port", "{port}", "--log-level", "warning", *threads])
    with launched(spec, out / "ovchat-serve.log") as url:
        report["direct"] = measure(url, name, loads, args.max_tokens, seed=1)
    print("ovchat serve:", json.dumps(report["direct"]), flush=True)

    os.environ[CALLBACK_ENV] = CALLBACK
    parts = args.parts.split(",")
    variants = [parse_variant(text) for text in args.variant or ["default="]]
    ray_env, url = None, None
    try:
        for index, (label, options, env) in enumerate(variants):
            if env != ray_env:
                url = start_ray(machine_cores, env, restart=ray_env is not None)
                ray_env = env
            if "overhead" in parts:  # 1b. one replica on the same cores.
                key = f"ray_1_replica_all_cores[{label}]"
                report["deploy_" + key] = deploy(serve, build, settings(dict(model=model_path, num_cpus=cores, **options)))
                report[key] = measure(url, name, loads, args.max_tokens, seed=1)
                print(f"Ray, 1 replica ({label}):", json.dumps(report[key]), flush=True)
            if index:
                continue
            if "scaling" in parts:  # 2. scaling: 1 x 1 CPU, then 2 x 1 CPU.
                deploy(serve, build, settings(dict(model=model_path, num_cpus=1, **options)))
                report["ray_1_replica_1_cpu"] = measure(url, name, loads[1:], args.max_tokens, seed=5000)
                print("Ray, 1 replica of 1 CPU:", json.dumps(report["ray_1_replica_1_cpu"]), flush=True)
                deploy(serve, build, settings(dict(model=model_path, num_cpus=1, num_replicas=2, **options)))
                report["ray_2_replicas_1_cpu"] = measure(url, name, loads[1:], args.max_tokens, seed=9000)
                print("Ray, 2 replicas of 1 CPU:", json.dumps(report["ray_2_replicas_1_cpu"]), flush=True)
            if "affinity" in parts:  # 3. the 6th turn, named and not (alternating, on fresh chats each time).
                if "scaling" not in parts:
                    deploy(serve, build, settings(dict(model=model_path, num_cpus=1, num_replicas=2, **options)))
                report["turn6_unnamed"] = sixth_turn_ttft(url, args.conversations, False, args.system_words, seed=20000)
                report["turn6_named"] = sixth_turn_ttft(url, args.conversations, True, args.system_words, seed=30000)
                print("6th turn:", json.dumps([report["turn6_unnamed"], report["turn6_named"]]), flush=True)
    finally:
        stop_ray()
    report["summary"] = summary(report)
    (out / "ray_serve.json").write_text(json.dumps(report, indent=1))
    print_table(report)
    print(json.dumps(report["summary"]))
    return 0


def _ratio(a, b):
    return round(a / b, 2) if a and b else None


def _cpu(load: dict, engine: bool | None = None) -> float:
    """CPU ms per output token of the server's processes (engine True: only its engines', False: all but them)."""
    return round(sum(ms for role, ms in load["cpu_ms_per_token"].items()
                     if engine is None or role.endswith("_engine") == engine), 2)


def summary(r: dict) -> dict:
    d, figures = r["direct"], {}
    for key in r:
        if not key.startswith("ray_1_replica_all_cores["):
            continue
        ray1, tag = r[key], key.removeprefix("ray_1_replica_all_cores")
        figures.update({
            f"throughput_ratio_1_stream{tag}": _ratio(ray1["1_streams"]["tokens_per_s"], d["1_streams"]["tokens_per_s"]),
            f"throughput_ratio_16_streams{tag}": _ratio(ray1["16_streams"]["tokens_per_s"], d["16_streams"]["tokens_per_s"]),
            f"ttft_ratio_1_stream{tag}": _ratio(ray1["1_streams"]["ttft_ms_p50"], d["1_streams"]["ttft_ms_p50"]),
            f"ttft_ratio_16_streams{tag}": _ratio(ray1["16_streams"]["ttft_ms_p50"], d["16_streams"]["ttft_ms_p50"]),
            f"tpot_ratio_16_streams{tag}": _ratio(ray1["16_streams"]["tpot_ms_p50"], d["16_streams"]["tpot_ms_p50"]),
            f"cpu_ms_per_token_16_streams{tag}": _cpu(ray1["16_streams"]),
            f"cpu_ms_per_token_16_streams_but_engine{tag}": _cpu(ray1["16_streams"], engine=False),
        })
    figures["direct_cpu_ms_per_token_16_streams"] = _cpu(d["16_streams"])
    figures["direct_cpu_ms_per_token_16_streams_but_engine"] = _cpu(d["16_streams"], engine=False)
    if "ray_2_replicas_1_cpu" in r:
        figures["scaling_2x1_over_1x1_16_streams"] = _ratio(r["ray_2_replicas_1_cpu"]["16_streams"]["tokens_per_s"],
                                                            r["ray_1_replica_1_cpu"]["16_streams"]["tokens_per_s"])
    if "turn6_named" in r:
        figures["turn6_ttft_named_over_unnamed"] = _ratio(r["turn6_named"]["turn6_ttft_ms_median"],
                                                          r["turn6_unnamed"]["turn6_ttft_ms_median"])
    return figures


def print_table(r: dict) -> None:
    print("\n| setup | streams | TTFT p50 ms | TPOT p50 ms | tokens/s | CPU ms per token | load avg |\n|---|---|---|---|---|---|---|")
    keys = ["direct", *(key for key in r if key.startswith("ray_1_replica_all_cores[")), "ray_1_replica_1_cpu",
            "ray_2_replicas_1_cpu"]
    for key in keys:
        for load in r.get(key, {}).values():
            cpu = ", ".join(f"{role} {ms:.2f}" for role, ms in sorted(load["cpu_ms_per_token"].items()))
            print(f"| {key} | {load['concurrency']} | {load['ttft_ms_p50']:.0f} | {load['tpot_ms_p50']:.1f} | {load['tokens_per_s']:.0f} "
                  f"| {cpu} | {load['load_average'][0]:.1f} |")
    for key in ("turn6_unnamed", "turn6_named"):
        if key not in r:
            continue
        print(f"| {key} | 1 | {r[key]['turn6_ttft_ms_median']:.0f} (median of {len(r[key]['turn6_ttft_ms'])}) | - | - | - "
              f"| {r[key]['load_average'][0]:.1f} |")


if __name__ == "__main__":
    raise SystemExit(main())
