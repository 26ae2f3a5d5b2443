"""Ray Serve against `ovchat serve`, side by side in one run (issue 19, points 7 and 4).

    flock /tmp/ovchat-bench.lock python -m studies.ray_serve [--model M] [--out DIR]

1. Overhead: `ovchat serve` (a subprocess, all cores) against one Ray Serve replica asking for
   the same cores (num_cpus = the machine's), at 1 and 16 concurrent streams: TTFT p50 and
   aggregate tokens/s (benchmarks/server_load.py's closed loop, fresh prompts, EOS ignored).
2. Scaling: two replicas of one CPU against one replica of one CPU, 16 streams.
3. Conversation-affine routing: at two replicas of one CPU, chats of 6 turns over a long system
   prompt; the 6th turn's TTFT with the conversation named (X-Session-ID: its replica holds the
   prefix in its KV cache) and without (Ray's default routing: power of two choices).

`--parts` picks among the three; `--replica-engine both` measures part 1 twice, each replica's
engine in a child process (the default, as `ovchat serve`) and in the replica's own process.
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
    An engine process (engine/process.py's child) counts with the process that started it."""
    import psutil
    groups: dict[str, list] = {}
    for process in psutil.Process().children(recursive=True):
        try:
            owner = process.parent() if "process_child" in " ".join(process.cmdline()) else process
            name = " ".join(owner.cmdline()) or owner.name()
        except (psutil.Error, AttributeError):
            continue
        role = ("proxy" if "ProxyActor" in name else "replicas" if "ServeReplica" in name
                else "ovchat_serve" if " serve -m " in name else "ray_other")
        groups.setdefault(role, []).append(process)
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
            "ttft_ms_p50": result.ttft_ms_p50, "tokens_per_s": round(result.aggregate_tokens_per_s, 1),
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
    p.add_argument("--parts", default="overhead,scaling,affinity",
                   help="comma-separated: overhead, scaling, affinity (default: %(default)s)")
    p.add_argument("--replica-engine", choices=["process", "in-process", "both"], default="process",
                   help="each replica's engine in a child process (the default), in the replica's own process, "
                        "or both side by side in the overhead part")
    args = p.parse_args(argv)
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray over the loopback only (read at import)
    import ray
    from ray import serve
    from ovchat.engine.model import resolve
    from ovchat.server.ray_app import RayAppOptions, build
    from ovchat.server.ray_proxy import CALLBACK, CALLBACK_ENV

    model_path = str(resolve(args.model).path)
    name = Path(model_path).name
    cores = len(os.sched_getaffinity(0))
    loads = [(1, 8), (16, args.requests)]
    report = {"machine": machine_info(), "model": model_path, "max_tokens": args.max_tokens, "cores": cores,
              "replica_engine": args.replica_engine, "parts": args.parts, "load_average_start": load_average()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    # 1a. ovchat serve, all cores.
    spec = ServerSpec("ovchat serve", [sys.executable, "-c", "from ovchat.tools.cli import main; raise SystemExit(main())",
                                       "serve", "-m", model_path, "--port", "{port}", "--log-level", "warning"])
    with launched(spec, out / "ovchat-serve.log") as url:
        report["direct"] = measure(url, name, loads, args.max_tokens, seed=1)
    print("ovchat serve:", json.dumps(report["direct"]), flush=True)

    os.environ[CALLBACK_ENV] = CALLBACK
    ray.init(address="local", num_cpus=cores, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        url = f"http://127.0.0.1:{port}"
        parts = args.parts.split(",")
        variants = {"process": [True], "in-process": [False], "both": [True, False]}[args.replica_engine]
        if "overhead" in parts:  # 1b. one replica on the same cores.
            for engine_process in variants:
                key = "ray_1_replica_all_cores" + ("" if engine_process else "_in_process")
                report["deploy_" + key] = deploy(serve, build, RayAppOptions(model=model_path, num_cpus=cores,
                                                                            engine_process=engine_process))
                report[key] = measure(url, name, loads, args.max_tokens, seed=1)
                print(f"Ray, 1 replica ({key}):", json.dumps(report[key]), flush=True)
        engine_process = variants[0]
        if "scaling" in parts:  # 2. scaling: 1 x 1 CPU, then 2 x 1 CPU.
            deploy(serve, build, RayAppOptions(model=model_path, num_cpus=1, engine_process=engine_process))
            report["ray_1_replica_1_cpu"] = measure(url, name, loads[1:], args.max_tokens, seed=5000)
            print("Ray, 1 replica of 1 CPU:", json.dumps(report["ray_1_replica_1_cpu"]), flush=True)
            deploy(serve, build, RayAppOptions(model=model_path, num_cpus=1, num_replicas=2, engine_process=engine_process))
            report["ray_2_replicas_1_cpu"] = measure(url, name, loads[1:], args.max_tokens, seed=9000)
            print("Ray, 2 replicas of 1 CPU:", json.dumps(report["ray_2_replicas_1_cpu"]), flush=True)
        if "affinity" in parts:  # 3. the 6th turn, named and not (alternating, on fresh chats each time).
            if "scaling" not in parts:
                deploy(serve, build, RayAppOptions(model=model_path, num_cpus=1, num_replicas=2,
                                                   engine_process=engine_process))
            report["turn6_unnamed"] = sixth_turn_ttft(url, args.conversations, False, args.system_words, seed=20000)
            report["turn6_named"] = sixth_turn_ttft(url, args.conversations, True, args.system_words, seed=30000)
            print("6th turn:", json.dumps([report["turn6_unnamed"], report["turn6_named"]]), flush=True)
    finally:
        serve.shutdown()
        ray.shutdown()
    report["summary"] = summary(report)
    (out / "ray_serve.json").write_text(json.dumps(report, indent=1))
    print_table(report)
    print(json.dumps(report["summary"]))
    return 0


def _ratio(a, b):
    return round(a / b, 2) if a and b else None


def _cpu(load: dict) -> float:
    """CPU ms per output token of all the server's processes."""
    return round(sum(load["cpu_ms_per_token"].values()), 2)


def summary(r: dict) -> dict:
    d, figures = r["direct"], {}
    for key in ("ray_1_replica_all_cores", "ray_1_replica_all_cores_in_process"):
        if key not in r:
            continue
        ray1, tag = r[key], key.removeprefix("ray_1_replica_all_cores") or "_engine_process"
        figures.update({
            f"throughput_ratio_1_stream{tag}": _ratio(ray1["1_streams"]["tokens_per_s"], d["1_streams"]["tokens_per_s"]),
            f"throughput_ratio_16_streams{tag}": _ratio(ray1["16_streams"]["tokens_per_s"], d["16_streams"]["tokens_per_s"]),
            f"ttft_ratio_1_stream{tag}": _ratio(ray1["1_streams"]["ttft_ms_p50"], d["1_streams"]["ttft_ms_p50"]),
            f"ttft_ratio_16_streams{tag}": _ratio(ray1["16_streams"]["ttft_ms_p50"], d["16_streams"]["ttft_ms_p50"]),
            f"cpu_ms_per_token_16_streams{tag}": _cpu(ray1["16_streams"]),
        })
    figures["direct_cpu_ms_per_token_16_streams"] = _cpu(d["16_streams"])
    if "ray_2_replicas_1_cpu" in r:
        figures["scaling_2x1_over_1x1_16_streams"] = _ratio(r["ray_2_replicas_1_cpu"]["16_streams"]["tokens_per_s"],
                                                            r["ray_1_replica_1_cpu"]["16_streams"]["tokens_per_s"])
    if "turn6_named" in r:
        figures["turn6_ttft_named_over_unnamed"] = _ratio(r["turn6_named"]["turn6_ttft_ms_median"],
                                                          r["turn6_unnamed"]["turn6_ttft_ms_median"])
    return figures


def print_table(r: dict) -> None:
    print("\n| setup | streams | TTFT p50 ms | tokens/s | CPU ms per token | load avg |\n|---|---|---|---|---|---|")
    for key in ("direct", "ray_1_replica_all_cores", "ray_1_replica_all_cores_in_process", "ray_1_replica_1_cpu",
                "ray_2_replicas_1_cpu"):
        for load in r.get(key, {}).values():
            cpu = ", ".join(f"{role} {ms:.2f}" for role, ms in sorted(load["cpu_ms_per_token"].items()))
            print(f"| {key} | {load['concurrency']} | {load['ttft_ms_p50']:.0f} | {load['tokens_per_s']:.0f} "
                  f"| {cpu} | {load['load_average'][0]:.1f} |")
    for key in ("turn6_unnamed", "turn6_named"):
        if key not in r:
            continue
        print(f"| {key} | 1 | {r[key]['turn6_ttft_ms_median']:.0f} (median of {len(r[key]['turn6_ttft_ms'])}) | - | - "
              f"| {r[key]['load_average'][0]:.1f} |")


if __name__ == "__main__":
    raise SystemExit(main())
