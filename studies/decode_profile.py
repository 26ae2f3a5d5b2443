"""Where a decode step's time goes (issue 14), and what each OpenVINO property does to it.

    python -m studies.decode_profile                     # the split, default model
    python -m studies.decode_profile --lever kv-cache    # one lever against the defaults
    python -m studies.decode_profile --lever all --reps 3

The profile runs every part of studies/decode_parts.py in this one process, one after the
other, rotating their order each repetition, each repetition on a fresh random prompt (the same
for every part of it): the plugin alone, the plugin with per-layer counters, LLMPipeline with no
streamer / a token streamer / a text callback, the engine, and llama.cpp on the GGUF. A lever run
measures LLMPipeline with a token streamer (as the engine streams) under the engine's properties
("default") and under each variant of one property, interleaved the same way. Figures are
medians (min–max) over repetitions; ratios are taken within a repetition and then summarised.
Prints a table and ends with one JSON line; `--out DIR` also writes profile.json there.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from . import decode_parts as parts
from ovchat.benchmarks import roofline
from ovchat.benchmarks.machine import load_average, machine_info
from ovchat.benchmarks.pairing import paired, rotation, stats
from ovchat.benchmarks.worker import prompt_ids

PARTS = ("kernels", "layers", "genai-none", "genai-tokens", "genai-text", "engine", "llamacpp")
# Each lever: the variants measured against the engine's own properties ("default").
LEVERS = {
    "threads": {"threads-1": {"INFERENCE_NUM_THREADS": 1}, "threads-2": {"INFERENCE_NUM_THREADS": 2}},
    "pinning": {"pin-on": {"ENABLE_CPU_PINNING": True}, "pin-off": {"ENABLE_CPU_PINNING": False}},
    "kv-cache": {"kv-u8": {"KV_CACHE_PRECISION": "u8"}, "kv-f16": {"KV_CACHE_PRECISION": "f16"},
                 "kv-f32": {"KV_CACHE_PRECISION": "f32"}},
    "dynamic-quant": {f"dq-{g}": {"DYNAMIC_QUANTIZATION_GROUP_SIZE": g} for g in (0, 32, 64, 128)},
    "attention": {"sdpa": {"ATTENTION_BACKEND": "SDPA"}, "pa": {"ATTENTION_BACKEND": "PA"}},
    "precision": {"bf16": {"INFERENCE_PRECISION_HINT": "bf16"}, "f32": {"INFERENCE_PRECISION_HINT": "f32"}},
}
REPORTED_PROPERTIES = ("INFERENCE_NUM_THREADS", "ENABLE_CPU_PINNING", "KV_CACHE_PRECISION",
                       "DYNAMIC_QUANTIZATION_GROUP_SIZE", "INFERENCE_PRECISION_HINT", "NUM_STREAMS")


def setup_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m studies.decode_profile", description=__doc__.split("\n")[0])
    p.add_argument("--model", help="exported IR folder (default: the default model)")
    p.add_argument("--gguf", help="GGUF for llama.cpp (default: the default model's source, if in the cache)")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--prompts", default="32,512", help="prompt lengths in tokens, comma-separated")
    p.add_argument("--parts", default=",".join(PARTS), help=f"profile parts (of {', '.join(PARTS)})")
    p.add_argument("--lever", help=f"measure these properties' variants instead (comma-separated, of "
                                   f"{', '.join(LEVERS)}; or all), one lever after the other")
    p.add_argument("--out", help="folder for the JSON report (profile*.json or levers-<lever>.json)")
    p.add_argument("--show", help="print the tables of a saved JSON report, measure nothing")
    return p


def default_files() -> tuple[Path, Path | None]:
    from ovchat.engine.paths import default_model_dir
    ir = default_model_dir()
    info = json.loads((ir / "ovchat.json").read_text()) if (ir / "ovchat.json").exists() else {}
    gguf = Path(info.get("source", {}).get("path", ""))
    return ir, (gguf if gguf.suffix == ".gguf" and gguf.exists() else None)


def build_parts(names: list[str], ir: Path, gguf: Path | None) -> dict:
    props = parts.engine_properties()
    makers = {"kernels": lambda: parts.KernelLoop(ir, props), "layers": lambda: parts.LayerCounters(ir, props),
              "genai-none": lambda: parts.Genai(ir, props, "none"),
              "genai-tokens": lambda: parts.Genai(ir, props, "tokens"),
              "genai-text": lambda: parts.Genai(ir, props, "text"),
              "engine": lambda: parts.EnginePart(ir, props), "llamacpp": lambda: parts.LlamaCpp(gguf)}
    return {n: makers[n]() for n in names if n != "llamacpp" or gguf}


def levers_of(text: str) -> list[str]:
    names = list(LEVERS) if text == "all" else [n.strip() for n in text.split(",")]
    unknown = [n for n in names if n not in LEVERS]
    if unknown:
        raise SystemExit(f"Unknown lever {', '.join(unknown)}: pick from {', '.join(LEVERS)} or all.")
    return names


def build_lever(lever: str, ir: Path) -> dict:
    built = {"default": parts.Genai(ir, parts.engine_properties(), "tokens", "default")}
    for label, extra in LEVERS[lever].items():
        built[label] = parts.Genai(ir, parts.engine_properties(extra), "tokens", label)
    return built


def compiled_properties(ir: Path) -> dict:
    """What the CPU plugin chose for the engine's properties (the defaults a lever moves)."""
    loop = parts.KernelLoop(ir, parts.engine_properties())
    out = {}
    for name in REPORTED_PROPERTIES:
        try:
            out[name] = str(loop.compiled.get_property(name))
        except RuntimeError:
            out[name] = "n/a"
    return out


def measure(built: dict, lengths: list[int], reps: int, new_tokens: int, log, on_rep=lambda samples: None) -> dict:
    """samples[length][part] = one figures dict per repetition, parts rotated per repetition;
    `on_rep(samples)` after each repetition (a partial report survives a timeout)."""
    samples = {n: {name: [] for name in built} for n in lengths}
    for name, part in built.items():  # warm-up: first inference, page-in, thread pools
        part.run(prompt_ids(lengths[0], seed=10**6), 8)
    for rep in range(reps):
        for n in lengths:
            ids = prompt_ids(n, seed=1000 * rep + n)
            for name in rotation(list(built), rep):
                samples[n][name].append(built[name].run(ids, new_tokens))
        log(f"[decode_profile] rep {rep + 1}/{reps} done, load average {load_average()}")
        on_rep(samples)
    return samples


def summarise(samples: dict, reference: str) -> dict:
    """Per length and part: each figure's stats over repetitions, and the part's step time over
    the reference's, paired within each repetition: "ratio" on the mean step (TPOT as genai
    defines it), "ratio_median" on the median step (a preempted step moves it little)."""
    out = {}
    for n, by_part in samples.items():
        ref = by_part.get(reference, [])
        rows = {}
        for name, reps in by_part.items():
            rows[name] = {k: stats([r[k] for r in reps]) for k in reps[0] if k != "by_type_ms"} if reps else {}
            for label, key in (("ratio", "tpot_ms"), ("ratio_median", "median_ms")):
                rows[name][label] = paired([r[key] for r in reps], [f.get(key) for f in ref])
            if reps and "by_type_ms" in reps[0]:
                types = {t for r in reps for t in r["by_type_ms"]}
                rows[name]["by_type_ms"] = dict(sorted(
                    ((t, statistics.median(r["by_type_ms"].get(t, 0.0) for r in reps)) for t in types),
                    key=lambda kv: -kv[1]))
        out[str(n)] = rows
    return out


def split(samples: dict, key: str = "median_ms") -> dict:
    """The decode step cut into (a) the plugin, (b) genai's per-step work, (c) the streaming paths,
    each the median over repetitions of a difference taken within one repetition, on `key`."""
    out = {}
    for n, p in samples.items():
        def diff(a, b, key_a=key, key_b=key):
            if a not in p or b not in p:
                return None
            return stats([x[key_a] - y[key_b] for x, y in zip(p[a], p[b])])
        out[str(n)] = {"kernels_ms": stats([r[key] for r in p["kernels"]]) if "kernels" in p else None,
                       "genai_step_ms": diff("genai-none", "kernels"),
                       "genai_infer_over_plugin_ms": diff("genai-none", "kernels", "infer_median_ms", "infer_median_ms"),
                       # genai's own step minus its own infer(): sampling, stop checks, bookkeeping
                       "genai_outside_infer_ms": diff("genai-none", "genai-none", key, "infer_median_ms"),
                       "genai_sampling_ms": stats([r["sampling_ms"] for r in p["genai-none"]])
                       if "genai-none" in p else None,
                       "token_streamer_ms": diff("genai-tokens", "genai-none"),
                       "text_streamer_ms": diff("genai-text", "genai-none"),
                       "engine_path_ms": diff("engine", "genai-none"),
                       "llamacpp_ms": stats([r[key] for r in p["llamacpp"]]) if "llamacpp" in p else None}
    return out


def _cell(s: dict | None, digits: int = 2) -> str:
    if not s or s.get("median") is None:
        return "–"
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"


def table(summary: dict, reference: str) -> list[str]:
    lines = [f"| prompt | part | TPOT ms (mean step) | median step ms | ÷ {reference} (mean) | ÷ {reference} (median) "
             "| other (medians) |", "|---|---|---|---|---|---|---|"]
    shown = ("tpot_ms", "median_ms", "ratio", "ratio_median", "by_type_ms")
    for n, rows in summary.items():
        for name, r in rows.items():
            other = ", ".join(f"{k} {v['median']:.2f}" for k, v in r.items()
                              if k not in shown and v.get("median") is not None)
            lines.append(f"| {n} | {name} | {_cell(r.get('tpot_ms'))} | {_cell(r.get('median_ms'))} | "
                         f"{_cell(r['ratio'])} | {_cell(r['ratio_median'])} | {other} |")
    return lines


def layer_lines(summary: dict, top: int = 8) -> list[str]:
    lines = []
    for n, rows in summary.items():
        types = rows.get("layers", {}).get("by_type_ms")
        if types:
            lines.append(f"layers @{n}: " + ", ".join(f"{t} {ms:.2f}" for t, ms in list(types.items())[:top])
                         + f" (ms per step; all layers {rows['layers']['nodes_ms']['median']:.2f}, of which lm_head "
                         f"{rows['layers']['lm_head_ms']['median']:.2f})")
    return lines


def bandwidth_lines(report: dict) -> list[str]:
    """GB/s each part drew at its median step (IR bytes for all: the GGUF's differ by a few %),
    against the read bandwidth measured at the start of this run."""
    if "bandwidth_gbs" not in report:
        return []
    lines = [f"read bandwidth measured in this run: {report['bandwidth_gbs']:.1f} GB/s"]
    for n, rows in report["summary"].items():
        context = int(n) + report["new_tokens"] // 2
        per_step = roofline.step_bytes(report["ir_bytes"], context)
        cells = [f"{name} {roofline.achieved_gbs(per_step, 1000 / r['median_ms']['median']):.1f}"
                 for name, r in rows.items() if r.get("median_ms", {}).get("median")]
        lines.append(f"GB/s drawn @{n} ({per_step / 1e6:.0f} MB per step): " + ", ".join(cells))
    return lines


def run(args, log=lambda m: print(m, file=sys.stderr, flush=True), save=lambda report: None) -> dict:
    ir, gguf = (Path(args.model), None) if args.model else default_files()
    if args.gguf:
        gguf = Path(args.gguf)
    lengths = [int(n) for n in args.prompts.split(",")]
    started, load_start = time.time(), load_average()
    report = {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "model": str(ir), "gguf": str(gguf) if gguf else None,
              "reps": args.reps, "new_tokens": args.new_tokens, "machine": machine_info(),
              "compiled_properties": compiled_properties(ir), "engine_properties": parts.engine_properties(),
              "bandwidth_gbs": roofline.memory_bandwidth_gbs(), "ir_bytes": roofline.ir_decode_bytes(ir)}

    def finish(partial: bool) -> dict:
        report.update(load_average={"start": load_start, "end": load_average()}, partial=partial,
                      total_seconds=round(time.time() - started, 1))
        save(report)
        return report

    if args.lever:
        report["levers"] = {}
        for lever in levers_of(args.lever):
            def on_rep(samples, lever=lever):
                report["levers"][lever] = {"samples": samples, "summary": summarise(samples, "default")}
                finish(partial=True)
            measure(build_lever(lever, ir), lengths, args.reps, args.new_tokens, log, on_rep)
    else:
        def on_rep(samples):
            report.update(samples=samples, summary=summarise(samples, "kernels"), split=split(samples),
                          split_mean=split(samples, "tpot_ms"))
            finish(partial=True)
        measure(build_parts(args.parts.split(","), ir, gguf), lengths, args.reps, args.new_tokens, log, on_rep)
    return finish(partial=False)


def output_path(args) -> Path | None:
    if not args.out:
        return None
    return Path(args.out) / (f"levers-{args.lever.replace(',', '+')}.json" if args.lever else f"profile-{args.parts.replace(',', '+')}.json"
                             if args.parts != ",".join(PARTS) else "profile.json")


def _save(path: Path | None, report: dict) -> None:
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1))


def printable(report: dict) -> str:
    """The tables of a report (a finished or partial one, or one read back from its JSON)."""
    lines = [f"load average {report['load_average']}{' (partial)' if report.get('partial') else ''}; "
             f"compiled: {report['compiled_properties']}"]
    for lever, block in report.get("levers", {}).items():
        lines += [f"\n## lever {lever}", *table(block["summary"], "default")]
    if "summary" in report:
        lines += table(report["summary"], "kernels") + layer_lines(report["summary"]) + bandwidth_lines(report)
        lines += [f"split @{n}: " + ", ".join(f"{k} {_cell(v)}" for k, v in s.items() if v)
                  for n, s in report["split"].items()]
    return "\n".join(lines)


def brief(report: dict) -> dict:
    out = {k: report[k] for k in ("split", "load_average", "total_seconds", "partial") if k in report}
    if "levers" in report:
        out["levers"] = {lv: {n: {v: [r["ratio"]["median"], r["ratio_median"]["median"]] for v, r in rows.items()}
                              for n, rows in b["summary"].items()} for lv, b in report["levers"].items()}
    return out


def main(argv=None) -> int:
    args = setup_arg_parser().parse_args(argv)
    if args.lever:
        levers_of(args.lever)  # an unknown name fails now, before any model is compiled
    if args.show:
        report = json.loads(Path(args.show).read_text())
    else:
        path = output_path(args)
        report = run(args, save=lambda r: _save(path, r))
    print(printable(report))
    print(json.dumps(brief(report)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
