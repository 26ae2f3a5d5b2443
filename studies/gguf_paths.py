"""Three ways to run a GGUF, side by side on one file (the default model's unless --gguf names another;
issue 30, point 4):

  seed    `ovchat export FILE OUT` with the seed's recipe (dequantized, then quantized by NNCF)
  gguf    `ovchat export FILE OUT --preset gguf` (the file's own quantized blocks kept)
  direct  `Engine.load(FILE)` (openvino_genai's own GGUF reader)

    python -m studies.gguf_paths --seed-dir DIR --gguf-dir DIR [--rounds 3] [--out results.json]
                                 [--gguf FILE --skip-direct]   (Gemma: genai's reader refuses it)

Speed: each measurement is a child process (one load, cold compile: no compile cache), in
interleaved rounds (seed, gguf, direct, seed, ...): load time, then TTFT and TPOT of greedy
64-token answers to three prompts; medians per variant and ratios to `seed`. Fidelity: next-token
agreement with llama.cpp (llama-cpp-python on the same file), teacher-forced top-1 over
tools/fidelity.py's text (~290 tokens, llama.cpp's ids for all), and the same against the float
model the conversion writes. For `direct` the logits come from the graph genai's reader builds,
serialized by its `enable_save_ov_model` (the graph LLMPipeline runs on the .gguf).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

PROMPTS = ("What is the capital of France?", "Write a short poem about the sea.", "Explain what a CPU does.")


def speed(model: str) -> dict:
    """One child's measurement: load time, then per prompt TTFT and TPOT (greedy, 64 tokens)."""
    from ovchat import engine

    model = engine.Engine.load(model, device="CPU", cache_dir=False, warmup=False)
    load_ms = model.load_metrics.load_ms
    model.generate("Hello", engine.GenerationOptions(max_new_tokens=4))  # the first inference, out of the figures
    runs = [model.generate(p, engine.GenerationOptions(max_new_tokens=64, ignore_eos=True)).metrics for p in PROMPTS]
    return {"load_ms": load_ms, "ttft_ms": statistics.median(r.ttft_ms for r in runs),
            "tpot_ms": statistics.median(r.tpot_ms for r in runs)}


def _child(model: str) -> dict:
    run = subprocess.run([sys.executable, "-m", "studies.gguf_paths", "--child", model], capture_output=True, text=True)
    if run.returncode:
        raise RuntimeError(run.stderr[-2000:])
    return json.loads(run.stdout.strip().splitlines()[-1])


def _ir_logits(folder: Path, ids):
    from ovchat.tools.fidelity import export_logits

    return export_logits(folder, ids)


def fidelity(gguf: Path, folders: dict, direct: bool = True) -> dict:
    """Top-1 agreement of each variant with llama.cpp, teacher-forced over fidelity.TEXT
    (tools/llama_cpp_agreement.py: llama.cpp's ids, with the BOS the file asks for)."""
    import numpy as np

    from ovchat.tools import gguf_convert, llama_cpp_agreement as agreement
    from ovchat.tools.fidelity import source_logits

    ids, _ = agreement.reference_ids(gguf)
    expected = agreement.reference_top1(gguf, ids)
    results = {"text_tokens": len(ids)}
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        gguf_convert.convert(gguf, work / "float")
        logits = {"float": source_logits(work / "float", ids)}
        for name, folder in folders.items():
            logits[name] = _ir_logits(folder, ids)
        if direct:
            (work / "direct").mkdir()
            (work / "direct" / gguf.name).symlink_to(gguf)
            import openvino_genai as ov_genai
            ov_genai.LLMPipeline(str(work / "direct" / gguf.name), "CPU", enable_save_ov_model=True)
            for name in ("config.json", "generation_config.json"):
                (work / "direct" / name).write_text((work / "float" / name).read_text())
            logits["direct"] = _ir_logits(work / "direct", ids)
    float_top = np.asarray(logits["float"]).argmax(-1)
    for name, values in logits.items():
        results[name] = {"agree_llama_cpp": agreement.top1_agreement(expected, values),
                         "agree_float": agreement.top1_agreement(float_top, values)}
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child")
    parser.add_argument("--seed-dir", type=Path)
    parser.add_argument("--gguf-dir", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--skip-fidelity", action="store_true")
    parser.add_argument("--gguf", type=Path, help="the GGUF both exports were made from (default: the default model's)")
    parser.add_argument("--skip-direct", action="store_true", help="no direct load (a file genai's reader refuses)")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(speed(args.child)))
        return 0
    from ovchat.benchmarks.machine import load_average
    from ovchat.tools import default_model

    gguf = args.gguf or default_model.fetch_gguf()
    models = {"seed": str(args.seed_dir), "gguf": str(args.gguf_dir)} | ({} if args.skip_direct else {"direct": str(gguf)})
    runs: dict = {name: [] for name in models}
    loads = []
    for _ in range(args.rounds):
        for name, model in models.items():
            runs[name].append(_child(model))
            loads.append(load_average())
    summary = {name: {key: statistics.median(r[key] for r in rs) for key in rs[0]} for name, rs in runs.items()}
    for name in models:
        summary[name]["ratios_to_seed"] = {key: summary[name][key] / summary["seed"][key] for key in summary["seed"]
                                           if key != "ratios_to_seed"}
    result = {"speed": summary, "runs": runs, "load_average": loads}
    if not args.skip_fidelity:
        result["fidelity"] = fidelity(gguf, {"seed": args.seed_dir, "gguf": args.gguf_dir}, direct=not args.skip_direct)
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
