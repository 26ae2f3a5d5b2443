"""Which decoding settings make the default model's answers read well: the measurement behind
`engine.model.DEFAULT_DECODING` (the CLI's default when a model's generation_config.json states none).

    python -m ovchat.benchmarks.decoding_defaults [--model DIR] [--out FILE]

Asks 20 everyday prompts (the seed's system prompt, then one user turn; the demo's 256-token
limit) under each candidate setting and counts the answers that end in a loop of a repeated
sentence (or run of words), the answers that hit the token limit, and, for the prompts with a
known answer, whether the answer holds it ("What is the capital of France?" must still say
Paris). Greedy settings are deterministic; the sampled one uses a fixed seed. Prints a table,
writes the answers and counts as JSON, and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

SYSTEM_PROMPT = "You are a helpful AI assistant."  # the seed's, as in `ovchat demo` and `ovchat chat`
# (prompt, substring a correct answer holds, or None for open-ended prompts)
PROMPTS = (
    ("can you introduce yourself?", None),
    ("What is the capital of France?", "Paris"),
    ("How many days are there in a week?", "7|seven"),
    ("What is the largest planet in our solar system?", "Jupiter"),
    ("Who wrote Romeo and Juliet?", "Shakespeare"),
    ("What is the boiling point of water in degrees Celsius?", "100"),
    ("How many legs does a spider have?", "8|eight"),
    ("What gas do plants absorb from the air?", "carbon dioxide|CO2"),
    ("Give me three tips for sleeping better.", None),
    ("How do I make a cup of tea?", None),
    ("Write a short poem about the sea.", None),
    ("What should I pack for a weekend trip?", None),
    ("Explain what a computer does, in simple words.", None),
    ("Suggest a healthy breakfast.", None),
    ("Why is exercise good for you?", None),
    ("How can I save money each month?", None),
    ("Tell me a fun fact about cats.", None),
    ("What is a good way to learn a new language?", None),
    ("Write a thank-you note to a friend who helped me move.", None),
    ("What are the four seasons of the year?", "spring"),
)
CANDIDATES = {  # name -> GenerationOptions fields
    "greedy (the seed's)": {},
    "greedy, repetition penalty 1.05": {"repetition_penalty": 1.05},
    "greedy, repetition penalty 1.1": {"repetition_penalty": 1.1},
    "greedy, repetition penalty 1.2": {"repetition_penalty": 1.2},
    "sampling T 0.2, top-p 0.9, seed 0": {"do_sample": True, "temperature": 0.2, "top_p": 0.9, "seed": 0},
}
MAX_NEW_TOKENS = 256


def sentences(text: str) -> list[str]:
    """The text's sentences, normalised: lower case, inner spaces collapsed, end marks and list
    numbers dropped (so "1. Tea 2. Tea 3. Tea" is one sentence said three times)."""
    parts = (" ".join(p.lower().strip(" .!?*-#").split()) for p in re.split(r"(?<=[.!?])\s+|\n+", text))
    return [p for p in parts if p and not p.isdigit()]


def words(text: str) -> list[str]:
    """The text's words, lower case, numbers and punctuation dropped."""
    return re.findall(r"[a-z']+", text.lower())


def ends_in_loop(text: str, cut_off: bool = False, min_repeats: int = 3, max_period: int = 3) -> bool:
    """Whether the text ends in one sentence, or a block of up to `max_period` sentences, said
    `min_repeats` times in a row, or in a run of words said over and over with no sentence end
    between them ("it's worth saying that it's worth saying that ..."). `cut_off`: the token
    limit ended it, so an unfinished last sentence (or repeat) is ignored."""
    said = sentences(text)
    if cut_off and said and not re.search(r"[.!?]\s*$", text):
        said = said[:-1]
    for period in range(1, max_period + 1):
        tail = said[-period * min_repeats:]
        if len(tail) == period * min_repeats and all(tail[i] == tail[i % period] for i in range(len(tail))):
            return True
    return ends_in_word_loop(text, cut_off, min_repeats)


def ends_in_word_loop(text: str, cut_off: bool = False, min_repeats: int = 3, min_span: int = 12,
                      max_period: int = 40) -> bool:
    """Whether the text's last words are a block of up to `max_period` words said `min_repeats`
    times in a row, and at least `min_span` words in all (so "ha ha ha" is not a loop). The
    sentence test misses such a loop when no sentence ends inside it."""
    said = words(text)
    for period in range(1, max_period + 1):
        span = period * max(min_repeats, -(-min_span // period))
        for trim in range(period if cut_off else 1):  # cut off: the last repeat may be unfinished
            end = len(said) - trim
            tail = said[end - span:end]
            if end - span >= 0 and all(tail[i] == tail[i % period] for i in range(span)):
                return True
    return False


def most_repeated_sentence(text: str) -> int:
    said = sentences(text)
    return max((said.count(s) for s in set(said)), default=0)


def measure(model: str | None) -> dict:
    from .. import engine

    eng = engine.Engine.load(model)
    rows = {}
    for name, fields in CANDIDATES.items():
        options = engine.GenerationOptions(max_new_tokens=MAX_NEW_TOKENS, **fields)
        answers, started = [], time.perf_counter()
        for prompt, expected in PROMPTS:
            result = eng.generate([{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}],
                                  options)
            answers.append({"prompt": prompt, "text": result.text, "tokens": result.output_tokens,
                            "finish_reason": result.finish_reason, "ends_in_loop": ends_in_loop(result.text, result.finish_reason == "length"),
                            "most_repeated_sentence": most_repeated_sentence(result.text),
                            "correct": None if expected is None else bool(re.search(expected, result.text, re.I))})
        factual = [a["correct"] for a in answers if a["correct"] is not None]
        rows[name] = {
            "options": fields,
            "ends_in_loop": sum(a["ends_in_loop"] for a in answers),
            "hit_token_limit": sum(a["finish_reason"] == "length" for a in answers),
            "factual_correct": f"{sum(factual)}/{len(factual)}",
            "paris": answers[1]["correct"],
            "mean_tokens": round(sum(a["tokens"] for a in answers) / len(answers), 1),
            "seconds": round(time.perf_counter() - started, 1),
            "answers": answers,
        }
    eng.close()
    return {"model": str(eng.info.path), "prompts": len(PROMPTS), "max_new_tokens": MAX_NEW_TOKENS,
            "system_prompt": SYSTEM_PROMPT, "versions": _versions(), "candidates": rows}


def table(report: dict) -> str:
    lines = ["| setting | answers ending in a loop | hit the token limit | factual right | Paris | mean tokens |",
             "|---|---|---|---|---|---|"]
    for name, row in report["candidates"].items():
        lines.append(f"| {name} | {row['ends_in_loop']}/{report['prompts']} | {row['hit_token_limit']}/{report['prompts']} "
                     f"| {row['factual_correct']} | {'yes' if row['paris'] else 'NO'} | {row['mean_tokens']} |")
    return "\n".join(lines)


def _versions() -> dict:
    from importlib.metadata import version
    return {name: version(name) for name in ("openvino", "openvino-genai")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="an exported folder or .gguf (default: the embedded default model)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "decoding-defaults.json")
    args = parser.parse_args(argv)
    report = measure(args.model)
    args.out.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    print(table(report))
    print(json.dumps({"decoding_defaults": {name: {k: row[k] for k in ("ends_in_loop", "hit_token_limit",
                                                                      "factual_correct", "paris")}
                                            for name, row in report["candidates"].items()}, "out": str(args.out)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
