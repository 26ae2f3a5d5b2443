"""`ovchat bench`: run the benchmark scenarios and write JSON, Markdown and PNG reports.

    ovchat bench --quick                         CI smoke run: default model, a few minutes
    ovchat bench                                 the full suite on the default model
    ovchat bench --model default --model phi3-mini-shaped --out bench-results/<date>
    ovchat bench --model default --model gemma3-270m --backend ovchat --backend llamacpp --scenario latency
    ovchat bench --soak 10                       ovchat serve's RSS over 10 minutes of streams (benchmarks/soak.py)

Reports go under the current directory (bench-results/<date>-<profile>) or --out, never beside
the installed package. Ends with one JSON line (counts, where the report is, the headline ratios).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import sys
from dataclasses import replace
from pathlib import Path

from .backends import BACKENDS

RESULTS = Path("bench-results")  # relative: under the directory `ovchat bench` runs in


def setup_arg_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--model", action="append", metavar="MODEL",
                        help="default, phi3-mini-shaped (built on first use, ~4 min, ~11 GB RAM), "
                             "phi3-mini-shaped-int4[-all] (the same, all-int4 [output layer too]), gemma3-270m (a named "
                             "real model: `ovchat export gemma3-270m` on first use, ~2.5 min; llama.cpp runs its GGUF), an exported "
                             "folder (one exported from a GGUF runs on llama.cpp as that GGUF) or a .gguf; "
                             "repeatable (default: default)")
    parser.add_argument("--device", action="append", metavar="DEVICE",
                        help="CPU, GPU, NPU; repeatable (default: every one present)")
    parser.add_argument("--backend", action="append", choices=BACKENDS,
                        help="repeatable (default: all; missing ones are reported as skipped)")
    parser.add_argument("--scenario", action="append", metavar="NAME",
                        help="latency, chat, load, memory, concurrency, coldstart, server, starts, messages, remember, "
                             "models; repeatable")
    parser.add_argument("--quick", action="store_true", help="the CI smoke profile: short prompts, few repetitions")
    parser.add_argument("--reps", type=int, help="repetitions of every measurement (after the warm-ups)")
    parser.add_argument("--warmup", type=int, help="warm-up runs before the repetitions")
    parser.add_argument("--lengths", type=lambda s: tuple(int(x) for x in s.split(",")),
                        help="prompt lengths for the latency scenario, e.g. 32,512,2048")
    parser.add_argument("--new-tokens", type=int, help="tokens generated per latency run")
    parser.add_argument("--timeout", type=int, help="seconds allowed per worker process")
    parser.add_argument("--server-streams", type=lambda s: tuple(int(x) for x in s.split(",")),
                        help="the server scenario's concurrent streams, e.g. 1,4,16 (the default) or 16")
    parser.add_argument("--ovchat-serve-cmd", metavar="CMD",
                        help='the server scenario\'s `ovchat serve` (default: "python -m ovchat serve"); '
                             'e.g. "/other/worktree/.venv/bin/ovchat serve"')
    parser.add_argument("--soak", type=float, metavar="MINUTES",
                        help="instead of the scenarios: the memory soak of `ovchat serve`, RSS over MINUTES of "
                             "streams with disconnects (--server-streams' first value, default 8; --ovchat-serve-cmd, "
                             "e.g. \"python -m ovchat serve --in-process\"); its own flags: python -m ovchat.benchmarks.soak -h")
    parser.add_argument("--out", type=Path, help="report folder (default: ./bench-results/<date>-<profile>)")
    return parser


def register(subparsers) -> None:
    parser = subparsers.add_parser("bench", help="benchmark engines, devices and scenarios",
                                   description=__doc__.split("\n")[0])
    setup_arg_parser(parser).set_defaults(func=handle)


def profile_from(args):
    from .scenarios import FULL, QUICK
    profile = QUICK if args.quick else FULL
    overrides = {"reps": args.reps, "warmup": args.warmup, "lengths": args.lengths,
                 "new_tokens": args.new_tokens, "timeout_s": args.timeout, "ovchat_serve_cmd": args.ovchat_serve_cmd,
                 "server_concurrency": args.server_streams}
    if args.reps is not None:  # the costly per-process scenarios never repeat more than --reps
        overrides["load_reps"] = max(1, min(args.reps, profile.load_reps))
        overrides["concurrency_reps"] = max(1, min(args.reps, profile.concurrency_reps))
        overrides["server_reps"] = args.reps
    return replace(profile, **{k: v for k, v in overrides.items() if v is not None})


def handle(args) -> int:
    from . import report as report_mod
    from . import runner
    from .registry import SCENARIOS

    if args.soak is not None:
        return soak(args)
    unknown = set(args.scenario or []) - set(SCENARIOS)
    if unknown:
        print(f"ovchat bench: unknown scenario {', '.join(sorted(unknown))}; choose among "
              f"{', '.join(SCENARIOS)}", file=sys.stderr)
        return 2
    if "llamacpp" in (args.backend or BACKENDS) and importlib.util.find_spec("llama_cpp") is None:
        print("note: llama-cpp-python is not installed, so the llama.cpp backend is skipped; "
              "`bash tools/install.sh full` builds it (~7 min on 2 cores, progress shown)", file=sys.stderr)
    out = report_folder(args)
    result = runner.run(args.model or ["default"], args.device, args.backend, args.scenario,
                        profile_from(args), out, log=lambda m: print(m, flush=True),
                        on_entry=lambda partial: report_mod.write(dict(partial, partial=True), out))
    paths = report_mod.write(result, out)
    print(Path(paths[1]).read_text())
    print(json.dumps(summary_line(result, out)))
    return 1 if any(e["status"] == "error" for e in result["entries"]) else 0


def soak(args) -> int:
    """`--soak MINUTES`: benchmarks/soak.py, its report in the report folder as soak.json."""
    from . import soak as soak_mod
    if len(args.model or []) > 1:
        print("ovchat bench --soak: one --model at a time.", file=sys.stderr)
        return 2
    out = report_folder(args)
    out.mkdir(parents=True, exist_ok=True)
    argv = ["--minutes", str(args.soak), "--out", str(out / "soak.json")]
    models = [m for m in args.model or [] if m != "default"]
    argv += ["-m", models[0]] if models else []
    argv += ["--streams", str(args.server_streams[0])] if args.server_streams else []
    argv += ["--serve-cmd", args.ovchat_serve_cmd] if args.ovchat_serve_cmd else []
    return soak_mod.main(argv)


def report_folder(args) -> Path:
    """--out, else bench-results/<date>-<quick|full|soak> in the current directory."""
    mode = "soak" if args.soak is not None else "quick" if args.quick else "full"
    return args.out or Path.cwd() / RESULTS / f"{datetime.date.today().isoformat()}-{mode}"


def summary_line(result: dict, out: Path) -> dict:
    """Counts, where the report is, and the latency ratios (median of per-repetition ratios)."""
    statuses = [e["status"] for e in result["entries"]]
    ratios: dict[str, dict] = {}
    for row in result.get("ratios", []):
        if row["scenario"] == "latency":
            key = f"{row['model']}/{row['device']} {row['pair']}"
            ratios.setdefault(key, {})[row["figure"]] = round(row["median"], 3)
    from .server_report import headline
    return {"bench": "ovchat", "out": str(out), "ok": statuses.count("ok"), "skipped": statuses.count("skipped"),
            "error": statuses.count("error"), "total_seconds": result["total_seconds"],
            "load_average": result.get("load_average"), "latency_ratios": ratios, "server": headline(result)}


def main(argv=None) -> int:
    parser = setup_arg_parser(argparse.ArgumentParser(prog="python -m ovchat.benchmarks", description=__doc__.split("\n")[0]))
    return handle(parser.parse_args(argv))
