"""Speculative decoding and structured output: what they buy and what they cost, on the default model.

    python -m studies.speculative [--reps 3] [--new-tokens 128] [--out DIR]
    python -m studies.speculative --model phi3-mini-shaped --tasks "free chat,grounded edit" \
        --backends ovchat,ovchat-pa,ovchat-lookup,llamacpp --no-structured --reps 3 --new-tokens 96

Tasks: input-grounded work on a ~500-token text in tests/texts/ (copy-edit it,
summarise it: what prompt lookup is for) and free chat. Backends (speculative_worker.py): ovchat
plain (SDPA, the default), ovchat on PA (what speculation runs on), ovchat with prompt lookup
(5 and 10 guesses per pass), llama-cpp-python plain and with its LlamaPromptLookupDecoding
(2 and 10 guesses), all on the same GGUF-born model, the same prompt token ids, N tokens decoded
greedily with EOS ignored. Each backend lives in its own process, loaded once; repetitions are
interleaved in a rotating order and ratios are paired within a repetition (pairing.py), reported
as median [min-max]. Then structured output: TPOT with and without a JSON schema (same prompt,
interleaved) and the schema's compile time. Prints a table and ends with one JSON line.

--model picks another model (runner.resolve_model: "phi3-mini-shaped", built on first use, or an
IR folder with --gguf for llama.cpp). On the Phi-3-mini-shaped model the weights are random: its
output is noise that prompt lookup cannot copy, so that run measures what failed speculation
costs at the seed's scale, not what it buys. Backend names besides those in speculative_worker's
tables: ovchat-lookup-k<K>[-n<N>], prompt lookup with K guesses and n-grams of at most N tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from datetime import date
from pathlib import Path

from ovchat.benchmarks.child import Child
from ovchat.benchmarks.machine import cpu_model, git_commit, load_average, versions
from ovchat.benchmarks.pairing import paired, rotation
from tests.speculation_cases import GROUNDED_TEXT

from .speculative_worker import LLAMA, OVCHAT, is_ovchat, ovchat_kwargs

REPO = Path(__file__).resolve().parents[1]  # the checkout: studies run from it
TEXT = GROUNDED_TEXT
TASKS = {
    "grounded edit": "Copy the following text, correcting any spelling mistakes:\n\n" + TEXT,
    "grounded summary": "Summarise this report of a meeting, keeping its figures:\n\n" + TEXT,
    "free chat": "I am planning a week of sailing along the coast with two friends. What should we take, "
                 "and how should we plan each day?",
}
SCHEMA = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 40},
    "address": {"type": "object", "properties": {"street": {"type": "string", "maxLength": 60},
                                                 "city": {"type": "string", "maxLength": 40}},
                "required": ["street", "city"]},
    "age": {"type": "integer", "minimum": 0, "maximum": 120}}, "required": ["name", "address", "age"]}
JSON_PROMPT = "Give the name, age and postal address of a famous person as JSON."


class Worker:
    """One backend loaded once in its own process (studies/speculative_worker.py), through the
    harness's child protocol: every job has a timeout, a dead or silent worker is an error."""

    def __init__(self, name: str, model: str, gguf: str, llama_threads: int, timeout_s: float):
        self.name, self.timeout_s = name, timeout_s
        self.child = Child("studies.speculative_worker", [name, model, gguf, str(llama_threads)], cwd=REPO)
        self.ask(action="ready")  # loaded: the next worker loads after this one, not beside it

    def ask(self, **job) -> dict:
        return self.child.ask(job, self.timeout_s)

    def close(self) -> None:
        self.child.close()


def prompt_ids(model: str, text: str) -> list[int]:
    """The templated prompt's ids, as the engine feeds them: every backend gets these. genai's
    tokenizer alone, the one the engine's pipeline uses (no model to compile: at Phi-3 scale that
    would be a minute and 3 GB for nothing)."""
    import openvino_genai as ov_genai
    tokenizer = ov_genai.Tokenizer(model)
    templated = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True)
    return tokenizer.encode(templated, add_special_tokens=False).input_ids.data[0].tolist()


def speculation(workers: dict, ids: dict, reps: int, n: int) -> dict:
    runs = {task: {name: [] for name in workers} for task in ids}
    for rep in range(reps):
        for task in ids:
            for name in rotation(list(workers), rep):
                run = workers[name].ask(ids=ids[task], n=n)
                runs[task][name].append(run)
                _log(f"rep {rep + 1} {task:16} {name:20} TPOT {run['tpot_ms']:6.2f} ms  {run['tokens_per_s']:6.1f} tok/s")
    passes = {task: {name: workers[name].ask(action="passes", ids=ids[task], n=n)
                     for name in workers if is_ovchat(name)} for task in ids}
    return {"runs": runs, "passes": passes}


def summarise(result: dict, n: int) -> dict:
    """Per task and backend: median TPOT, ratios paired per repetition against plain ovchat (SDPA),
    ovchat on PA and llama.cpp's best backend (each where measured), tokens per pass, acceptance."""
    rows = {}
    for task, by_backend in result["runs"].items():
        reps = range(_reps(by_backend))
        llamas = [b for b in LLAMA if b in by_backend]
        llama_best = [min(by_backend[b][r]["tpot_ms"] for b in llamas) for r in reps] if llamas else []
        for name, runs in by_backend.items():
            tpot = [r["tpot_ms"] for r in runs]
            plain = by_backend.get(_plain(name))
            row = {"tpot_ms": statistics.median(tpot), "tokens_per_s": statistics.median(r["tokens_per_s"] for r in runs),
                   "vs_ovchat": paired(tpot, [r["tpot_ms"] for r in by_backend.get("ovchat", [])]),
                   "vs_ovchat_pa": paired(tpot, [r["tpot_ms"] for r in by_backend.get("ovchat-pa", [])]),
                   "vs_llamacpp_best": paired(tpot, llama_best),
                   "same_text_as_plain": runs[0]["text"] == plain[0]["text"] if plain else None}
            counted = result["passes"].get(task, {}).get(name) or runs[-1]
            if counted.get("passes"):
                per_pass = counted["decoded"] / counted["passes"]
                guesses = (ovchat_kwargs(name) or {}).get("num_assistant_tokens") or LLAMA.get(name)
                row.update(tokens_per_pass=per_pass, acceptance=(per_pass - 1) / guesses)
            rows.setdefault(task, {})[name] = row
    return rows


def structured_cost(worker: Worker, reps: int, n: int) -> dict:
    # The engine's first constrained request pays XGrammar's one-off set-up; measured apart.
    first = worker.ask(text=JSON_PROMPT, n=n, schema=SCHEMA)
    plain, constrained = [], []
    for rep in range(reps):
        for kind in (("plain", "json") if rep % 2 == 0 else ("json", "plain")):
            run = worker.ask(text=JSON_PROMPT, n=n, schema=SCHEMA if kind == "json" else None)
            (constrained if kind == "json" else plain).append(run)
            _log(f"rep {rep + 1} structured {kind:5} TPOT {run['tpot_ms']:6.2f} ms TTFT {run['ttft_ms']:7.1f} ms")
    compile_ms = [worker.ask(action="compile_ms", schema=dict(SCHEMA, title=f"s{i}"))["compile_ms"] for i in range(reps)]
    valid = all(_parses(run["text"]) for run in constrained)
    return {"first_ttft_ms": first["ttft_ms"], "tpot_ratio": paired([r["tpot_ms"] for r in constrained], [r["tpot_ms"] for r in plain]),
            "tpot_ms": statistics.median(r["tpot_ms"] for r in constrained),
            "tpot_plain_ms": statistics.median(r["tpot_ms"] for r in plain),
            "ttft_ms": statistics.median(r["ttft_ms"] for r in constrained),
            "ttft_plain_ms": statistics.median(r["ttft_ms"] for r in plain),
            "compile_check_ms": statistics.median(compile_ms), "all_valid_json": valid}


def markdown(report: dict) -> str:
    title = "Speculative decoding and structured output" if report.get("structured") else "Speculative decoding"
    model = report.get("model")
    lines = [f"# {title}" + (f", {model}" if model else "") + f" ({report['date']})", ""]
    if report.get("random_weights"):
        lines += ["Random weights: the output is noise that prompt lookup cannot copy, so its guesses fail "
                  "and these tables measure what failed speculation costs at this model's scale.", ""]
    lines += [f"{report['machine']['cpu']}; load average before/after {report['load_before']} / {report['load_after']}; "
             f"ovchat {report['commit']}; openvino-genai {report['versions'].get('openvino-genai')}, "
             f"llama-cpp-python {report['versions'].get('llama-cpp-python')} ({report['llama_threads']} threads); {report['reps']} interleaved repetitions, "
             f"{report['new_tokens']} tokens decoded greedily, EOS ignored. Ratios: median [min-max] of per-repetition ratios "
             "of TPOT (below 1: faster).", ""]
    for task, rows in report["speculation"].items():
        lines += [f"## {task}", "", "| backend | TPOT ms | tokens/s | vs ovchat plain | vs ovchat-pa | vs llama.cpp's best | "
                  "tokens per pass | acceptance | same text as plain* |", "|---|---|---|---|---|---|---|---|---|"]
        for name, r in rows.items():
            same = {True: "yes", False: "no", None: "-"}[r["same_text_as_plain"]]
            lines.append(f"| {name} | {r['tpot_ms']:.2f} | {r['tokens_per_s']:.1f} | {_cell(r['vs_ovchat'])} | "
                         f"{_cell(r.get('vs_ovchat_pa', {}))} | {_cell(r['vs_llamacpp_best'])} | {r.get('tokens_per_pass', 1):.2f} | "
                         f"{_pct(r.get('acceptance'))} | {same} |")
        lines.append("")
    lines += ["*greedy text equal to the plain run on the same attention backend (ovchat-pa for prompt lookup, "
              f"llamacpp for its lookup). {report['new_tokens']} tokens with EOS ignored reach near-ties where a pass over "
              "several tokens rounds differently from a pass over one, as SDPA and PA do (ovchat-pa vs ovchat).", ""]
    s = report.get("structured")
    if not s:
        return "\n".join(lines)
    lines += ["## Structured output (ovchat, single mode, JSON schema with nested object, bounds, required fields)", "",
              f"TPOT {s['tpot_ms']:.2f} ms with the schema, {s['tpot_plain_ms']:.2f} ms without: ratio {_cell(s['tpot_ratio'])}. "
              f"TTFT {s['ttft_ms']:.1f} ms with, {s['ttft_plain_ms']:.1f} ms without; the engine's first constrained "
              f"request: TTFT {s['first_ttft_ms']:.0f} ms (XGrammar's one-off set-up). Compile check of a new schema "
              f"(structured.py): {s['compile_check_ms']:.1f} ms. Every constrained answer parsed: {s['all_valid_json']}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.speculative", description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--backends", default=",".join([*OVCHAT, *LLAMA]),
                        help="comma-separated: names in speculative_worker's OVCHAT and LLAMA, or ovchat-lookup-k<K>[-n<N>]")
    parser.add_argument("--model", default="default",
                        help='"default" (the embedded default model), "phi3-mini-shaped" (random weights, built on first '
                             'use, ~5 min, ~11 GB RAM) or an exported IR folder')
    parser.add_argument("--gguf", help="the GGUF llama.cpp backends load (default: the one that goes with --model)")
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated, among: " + ", ".join(TASKS))
    parser.add_argument("--no-structured", action="store_true", help="skip the structured-output measurement")
    parser.add_argument("--llama-threads", type=int, default=os.cpu_count(),
                        help="llama.cpp's n_threads (default: every core; on a busy machine 1 can be faster: "
                             "its threads spin at a barrier and stall when one is descheduled)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds a worker may take for one job, its load "
                                                                    "included (default: %(default)s)")
    parser.add_argument("--out", type=Path, help="write bench.json and bench.md here")
    parser.add_argument("--report", type=Path, metavar="BENCH_JSON", help="only rewrite the tables of a saved run")
    args = parser.parse_args(argv)
    if args.report:
        report = json.loads(args.report.read_text())
        report["speculation"] = summarise(report["raw"], report["new_tokens"])
        args.report.write_text(json.dumps(report, indent=1))
        args.report.with_suffix(".md").write_text(markdown(report))
        print(markdown(report))
        return 0
    tasks, backends = parse_list(args.tasks, TASKS, "task"), parse_list(args.backends, None, "backend")
    if not args.no_structured and "ovchat" not in backends:
        parser.error("structured output is measured on the ovchat backend: add it to --backends, or --no-structured")
    label, model, gguf = model_files(args.model, args.gguf, needs_gguf=any(b in LLAMA for b in backends))
    load_before = load_average()
    ids = {task: prompt_ids(model, TASKS[task]) for task in tasks}
    workers = {}
    try:
        for name in backends:
            workers[name] = Worker(name, model, gguf, args.llama_threads, args.timeout)
        result = speculation(workers, ids, args.reps, args.new_tokens)
        structured = None if args.no_structured else structured_cost(workers["ovchat"], args.reps * 2,
                                                                     max(args.new_tokens, 160))
    finally:
        for worker in workers.values():
            worker.close()
    report = {"date": date.today().isoformat(), "model": label, "random_weights": _random_weights(model),
              "machine": {"cpu": cpu_model()}, "versions": versions(),
              "commit": git_commit(), "reps": args.reps, "llama_threads": args.llama_threads, "new_tokens": args.new_tokens,
              "prompt_tokens": {task: len(v) for task, v in ids.items()}, "load_before": load_before,
              "load_after": load_average(), "speculation": summarise(result, args.new_tokens), "structured": structured,
              "raw": result}
    print(markdown(report))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench.json").write_text(json.dumps(report, indent=1))
        (args.out / "bench.md").write_text(markdown(report))
    print(json.dumps({k: report[k] for k in ("speculation", "structured", "load_before", "load_after")}))
    return 0


def parse_list(text: str, known, what: str) -> list[str]:
    """A comma-separated choice, in the order given; an unknown name is refused, naming the choices."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    check = (lambda n: n in known) if known is not None else (lambda n: is_ovchat(n) or n in LLAMA)
    bad = [n for n in names if not check(n)]
    if bad or not names:
        choices = ", ".join(known) if known is not None else ", ".join([*OVCHAT, *LLAMA]) + ", ovchat-lookup-k<K>[-n<N>]"
        raise SystemExit(f"Unknown {what} {', '.join(bad) or '(none given)'}: choose among {choices}.")
    return names


def model_files(name: str, gguf: str | None, needs_gguf: bool) -> tuple[str, str, str]:
    """(label, IR folder, GGUF path or "") for --model / --gguf."""
    if name == "default":
        from ovchat.engine import default_model_dir
        return "default model", str(default_model_dir()), gguf or (str(_gguf()) if needs_gguf else "")
    from ovchat.benchmarks.runner import resolve_model
    files = resolve_model(name)
    if not files.ir:
        raise SystemExit(f"{name}: an exported IR folder is needed (the ovchat backends run it).")
    gguf = gguf or files.gguf or ""
    if needs_gguf and not gguf:
        raise SystemExit(f"{name}: no GGUF for the llama.cpp backends: pass --gguf, or leave them out of --backends.")
    return files.name, files.ir, gguf


def _random_weights(model: str) -> bool:
    """phi3_shaped writes phi3_shaped.json beside the IR it builds from random weights."""
    marker = Path(model) / "phi3_shaped.json"
    return marker.exists() and json.loads(marker.read_text()).get("random_weights", False)


def _gguf() -> Path:
    from ovchat.engine import cache_root
    found = sorted((cache_root() / "sources").glob("*.gguf"))
    if not found:
        raise SystemExit("No GGUF in the ovchat cache: run `ovchat export default` first.")
    return found[0]


def _reps(by_backend: dict) -> int:
    return min(len(runs) for runs in by_backend.values())


def _plain(name: str) -> str:
    """The plain run a backend's greedy text should equal: speculation runs on PA, so ovchat-pa."""
    if name.startswith("llamacpp"):
        return "llamacpp"
    return "ovchat-pa" if "lookup" in name else "ovchat"


def _cell(r: dict) -> str:
    return f"{r['median']:.2f} [{r['min']:.2f}-{r['max']:.2f}]" if r and r.get("median") is not None else "-"


def _pct(value) -> str:
    return f"{value * 100:.0f} %" if value is not None else "-"


def _parses(text: str) -> bool:
    try:
        json.loads(text)
        return True
    except json.JSONDecodeError:
        return False


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
