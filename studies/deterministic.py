"""Deterministic mode (issue 21 point 6): does a greedy answer depend on what runs beside it, and
what does `Engine.load(deterministic=True)` cost?

`python -m studies.deterministic [--model M] [--tokens 48] [--reps 3] [--out FILE]` (from a checkout's root)

1. Equality. For the default properties and for deterministic mode, each on the batching engine:
   16 questions answered one at a time on an engine without prefix caching (the reference),
   then on an engine with prefix caching: all 16 at once, two chats interleaved turn by turn,
   the 16 again behind a shared cached system prompt, and with prompt-lookup speculation.
   Counts the answers that differ from the reference.
2. Cost. TPOT and aggregate tokens/s at 1 and 16 streams (128 tokens, EOS ignored), default and
   deterministic engines loaded side by side, measured in alternation, `--reps` times.

Prints a table and ends with one JSON line. Hold the bench lock while it runs. The questions,
chats and ways of asking are tests/determinism_cases.py's, which tests/test_deterministic.py uses.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time

from ovchat.benchmarks.machine import machine_info
from tests.determinism_cases import QUESTIONS, all_at_once, chats, one_at_a_time, options, with_system


def differing(reference, answers) -> int:
    return sum(a != r for a, r in zip(answers, reference))


def equality(model, deterministic: bool, tokens: int) -> dict:
    from ovchat.engine import BatchOptions, Engine

    def load(**kwargs):
        return Engine.load(model, batching=kwargs.pop("batching", BatchOptions()), deterministic=deterministic, **kwargs)
    plain = load(batching=BatchOptions(prefix_caching=False))
    reference = one_at_a_time(plain, QUESTIONS, tokens)
    reference_system = one_at_a_time(plain, with_system(QUESTIONS), tokens)
    reference_chats = chats(plain, tokens, interleaved=False)
    plain.close()
    cached = load()
    found = {"batch of 16": differing(reference, all_at_once(cached, QUESTIONS, tokens)),
             "chats interleaved": differing(reference_chats, chats(cached, tokens, interleaved=True))}
    one_at_a_time(cached, with_system(QUESTIONS[:1]), tokens)  # the system prompt is now a cached prefix
    found["cached prefix, one at a time"] = differing(reference_system, one_at_a_time(cached, with_system(QUESTIONS), tokens))
    found["cached prefix, 16 at once"] = differing(reference_system, all_at_once(cached, with_system(QUESTIONS), tokens))
    cached.close()
    lookup = load(prompt_lookup=True)
    found["prompt lookup, 16 at once"] = differing(reference, all_at_once(lookup, QUESTIONS, tokens))
    found["prompt lookup, one at a time"] = differing(reference, one_at_a_time(lookup, QUESTIONS, tokens))
    lookup.close()
    return found


def speed(engine, streams: int, tokens: int = 128) -> dict:
    prompts = [QUESTIONS[i % len(QUESTIONS)] for i in range(streams)]
    results = [None] * streams
    start = threading.Barrier(streams + 1)

    def ask(i):
        start.wait()
        results[i] = engine.generate(prompts[i], options(tokens, ignore_eos=True))
    threads = [threading.Thread(target=ask, args=(i,)) for i in range(streams)]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    return {"tpot_ms": statistics.median(r.metrics.tpot_ms for r in results),
            "tokens_per_s": sum(r.output_tokens for r in results) / wall}


def cost(model, reps: int) -> dict:
    from ovchat.engine import BatchOptions, Engine

    engines = {name: Engine.load(model, batching=BatchOptions(max_sequences=16), deterministic=name == "deterministic")
               for name in ("default", "deterministic")}
    runs = {name: {1: [], 16: []} for name in engines}
    for _ in range(reps):
        for streams in (1, 16):
            for name, engine in engines.items():  # alternated, so load changes hit both alike
                runs[name][streams].append(speed(engine, streams))
    for engine in engines.values():
        engine.close()
    summary = {}
    for streams in (1, 16):
        for metric in ("tpot_ms", "tokens_per_s"):
            ratios = [d[metric] / b[metric] for d, b in zip(runs["deterministic"][streams], runs["default"][streams])]
            summary[f"{streams} streams {metric}"] = {
                "default": statistics.median(r[metric] for r in runs["default"][streams]),
                "deterministic": statistics.median(r[metric] for r in runs["deterministic"][streams]),
                "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios)}
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="default: the embedded default model")
    parser.add_argument("--tokens", type=int, default=48, help="answer length in the equality part")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--skip-equality", action="store_true")
    parser.add_argument("--skip-cost", action="store_true")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    report = {"machine": machine_info(), "load_before": os.getloadavg(), "tokens": args.tokens, "reps": args.reps}
    if not args.skip_equality:
        report["differing_answers"] = {mode: equality(args.model, mode == "deterministic", args.tokens)
                                       for mode in ("default", "deterministic")}
        print(f"{'case':32} {'default':>8} {'deterministic':>14}")
        for case in report["differing_answers"]["default"]:
            print(f"{case:32} {report['differing_answers']['default'][case]:>8} "
                  f"{report['differing_answers']['deterministic'][case]:>14}")
    if not args.skip_cost:
        report["cost"] = cost(args.model, args.reps)
        for name, row in report["cost"].items():
            print(f"{name:26} default {row['default']:8.1f}  deterministic {row['deterministic']:8.1f}  "
                  f"ratio {row['ratio_median']:.2f} [{row['ratio_min']:.2f}-{row['ratio_max']:.2f}]")
    report["load_after"] = os.getloadavg()
    line = json.dumps(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
