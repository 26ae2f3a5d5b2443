"""Greedy completions of an export against llama.cpp's on the GGUF it came from (issue 30, point 3).

    python -m studies.gguf_completions --pair NAME FILE.gguf EXPORT_DIR [--pair ...] [--tokens 8] [--out results.json]

Twelve raw prompts (no chat template: Gemma 3 270M is a base model) go through the exported model
(ovchat's engine, `apply_chat_template=False` as `ovchat generate --raw`, greedy, EOS ignored so
both give the same number of tokens) and through llama.cpp on the same file (llama-cpp-python,
greedy: temp 0). Per prompt: the generated ids of both and how many leading tokens agree; per
model: for how many prompts the first 1, 3 and 8 tokens match. The engine encodes the prompt
text itself (the user's path); `prompt_ids_equal` says whether its ids are llama.cpp's, so a
difference can be told apart from the tokenizer's. Beside it, the teacher-forced top-1 agreement
over tools/fidelity.py's text (tools/llama_cpp_agreement.py, what the export records).
`--float-bos` adds the export's fidelity check redone on llama.cpp's ids (BOS first where the file
asks for it; the check itself feeds none), and the float model's own agreement with llama.cpp.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

PROMPTS = (
    "The capital of France is",
    "Water boils at a temperature of",
    "The first president of the United States was",
    "Once upon a time, there was a",
    "The three primary colors are",
    "The largest planet in our solar system is",
    "To make a cup of tea, you",
    "Photosynthesis is the process by which",
    "1, 2, 3, 4, 5,",
    "The opposite of hot is",
    "def fibonacci(n):\n",
    "In 1969, astronauts landed on",
)
PREFIXES = (1, 3, 8)


def llama_cpp_completions(gguf: Path, prompts, tokens: int) -> list:
    """(prompt ids, generated ids) per prompt, llama.cpp greedy."""
    import llama_cpp

    from ovchat.tools.llama_cpp_agreement import quiet

    with quiet():
        model = llama_cpp.Llama(str(gguf), n_ctx=256, n_threads=2, verbose=False)
    results = []
    for prompt in prompts:
        ids = model.tokenize(prompt.encode(), add_bos=True)  # the file's BOS rule, as llama.cpp's CLI
        out = []
        for token in model.generate(ids, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0, reset=True):
            out.append(int(token))
            if len(out) == tokens:
                break
        results.append((ids, out))
    return results


def ovchat_completions(export_dir: Path, prompts, tokens: int) -> list:
    """(prompt ids, generated ids, text) per prompt: the engine, raw prompt, greedy."""
    from ovchat import engine

    # batching: GeneratedToken ids come from genai's continuous-batching pipeline (logprobs=True)
    model = engine.Engine.load(export_dir, device="CPU", batching=True)
    options = engine.GenerationOptions(max_new_tokens=tokens, do_sample=False, ignore_eos=True,
                                       apply_chat_template=False, logprobs=True)
    results = []
    for prompt in prompts:
        result = model.generate(prompt, options)
        results.append((model.tokenizer.encode(prompt), [t.id for t in result.tokens], result.text))
    return results


def leading_equal(a: list, b: list) -> int:
    count = 0
    for x, y in zip(a, b):
        if x != y:
            break
        count += 1
    return count


def compare(gguf: Path, export_dir: Path, tokens: int) -> dict:
    import llama_cpp

    from ovchat.tools import llama_cpp_agreement

    reference = llama_cpp_completions(gguf, PROMPTS, tokens)
    ours = ovchat_completions(export_dir, PROMPTS, tokens)
    with llama_cpp_agreement.quiet():
        vocab = llama_cpp.Llama(str(gguf), vocab_only=True, verbose=False)
    rows = []
    for prompt, (ref_ids, ref_out), (own_ids, own_out, text) in zip(PROMPTS, reference, ours):
        rows.append({"prompt": prompt, "prompt_ids_equal": ref_ids == own_ids, "leading_equal": leading_equal(ref_out, own_out),
                     "llama_cpp": vocab.detokenize(ref_out).decode(errors="replace"), "ovchat": text,
                     "llama_cpp_ids": ref_out, "ovchat_ids": own_out})
    summary = {f"first_{k}": sum(r["leading_equal"] >= k for r in rows) for k in PREFIXES if k <= tokens}
    manifest = json.loads((export_dir / "ovchat.json").read_text())
    teacher_forced = manifest.get("fidelity", {}).get("llama_cpp") or llama_cpp_agreement.measure(gguf, export_dir).to_manifest()
    return {"gguf": gguf.name, "export_recipe": manifest.get("recipe", {}).get("preset"), "prompts": len(rows),
            "first_tokens_match": summary, "teacher_forced": teacher_forced,
            "fidelity_vs_float": {k: manifest.get("fidelity", {}).get(k) for k in ("top1_agreement", "perplexity_ratio")},
            "rows": rows}


def float_with_bos(gguf: Path, export_dir: Path) -> dict:
    """fidelity.measure's figures on llama.cpp's ids, and the float model against llama.cpp."""
    import math
    import tempfile

    from ovchat.tools import gguf_convert, llama_cpp_agreement
    from ovchat.tools.fidelity import _next_token_stats, export_logits, source_logits

    ids, bos = llama_cpp_agreement.reference_ids(gguf)
    expected = llama_cpp_agreement.reference_top1(gguf, ids)
    with tempfile.TemporaryDirectory() as work:
        gguf_convert.convert(gguf, Path(work) / "float")
        float_logits = source_logits(Path(work) / "float", ids)
    top_float, nll_float = _next_token_stats(float_logits, ids)
    top_export, nll_export = _next_token_stats(export_logits(export_dir, ids), ids)
    return {"text_tokens": len(ids), "bos": bos, "top1_agreement": float((top_float == top_export).mean()),
            "perplexity_source": math.exp(nll_float), "perplexity_export": math.exp(nll_export),
            "perplexity_ratio": math.exp(nll_export - nll_float),
            "float_agreement_with_llama_cpp": llama_cpp_agreement.top1_agreement(expected, float_logits)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", nargs=3, action="append", metavar=("NAME", "GGUF", "EXPORT"), required=True)
    parser.add_argument("--tokens", type=int, default=8)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--float-bos", action="store_true", help="only the fidelity check on llama.cpp's ids")
    args = parser.parse_args()
    from ovchat.benchmarks.machine import load_average
    from ovchat.tools.export import tool_versions

    result = {"tokens": args.tokens, "versions": tool_versions(), "models": {}}
    for name, gguf, export_dir in args.pair:
        if args.float_bos:
            result["models"][name] = float_with_bos(Path(gguf), Path(export_dir))
            continue
        result["models"][name] = compare(Path(gguf), Path(export_dir), args.tokens)
        print(name, result["models"][name]["first_tokens_match"], f"of {len(PROMPTS)}", file=sys.stderr)
    result["load_average"] = load_average()
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
