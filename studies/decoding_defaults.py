"""Which decoding settings make the default model's answers read well: the measurement behind
`engine.model.DEFAULT_DECODING` (the CLI's default when a model's generation_config.json states none).

    python -m studies.decoding_defaults [--model DIR] [--out FILE] [--only TEXT ...]

Asks 20 everyday prompts (the seed's system prompt, then one user turn; the demo's 256-token
limit) under each candidate setting and counts the answers that end in a loop of a repeated
sentence (or run of words), the answers that hit the token limit, and, for the prompts with a
known answer, whether the answer holds it, anywhere and in its first sentence ("What is the
capital of France?" must still say Paris); then 20 more short questions with a known answer
(right in the first sentence; loops counted too). Greedy settings are deterministic; the
sampled one uses a fixed seed. Prints a table, writes the answers and counts as JSON, and ends
with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

from tests.loops import ends_in_loop, sentences

SYSTEM_PROMPT = "You are a helpful AI assistant."  # the seed's, as in `ovchat demo` and `ovchat chat`
# (prompt, pattern a correct answer holds, or None for open-ended prompts). The patterns name
# the answer, not a bare number: "7|seven" once counted "7 leap years" for the week.
PROMPTS = (
    ("can you introduce yourself?", None),
    ("What is the capital of France?", r"Paris"),
    ("How many days are there in a week?", r"\b(7|seven) days"),
    ("What is the largest planet in our solar system?", r"Jupiter"),
    ("Who wrote Romeo and Juliet?", r"Shakespeare"),
    ("What is the boiling point of water in degrees Celsius?", r"\b100 ?(°|degrees)"),
    ("How many legs does a spider have?", r"\b(8|eight) legs|\bfour pairs"),
    ("What gas do plants absorb from the air?", r"carbon dioxide|CO2"),
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
    ("What are the four seasons of the year?", r"spring"),
)
# Twenty more short questions, because 8 are too few to tell one flipped answer from a real loss;
# right means the answer's first sentence holds it. Kept apart from the 20 above: a held-out set
# for the loop count too.
FACTS = (
    ("What is the capital of Italy?", r"Rome"),
    ("What is the capital of Japan?", r"Tokyo"),
    ("What is the capital of Germany?", r"Berlin"),
    ("How many continents are there?", r"\b(7|seven)\b"),
    ("What color is the sky on a clear day?", r"blue"),
    ("What is the freezing point of water in degrees Celsius?", r"\b0 ?(°|degrees)|\bzero degrees"),
    ("Who painted the Mona Lisa?", r"Leonardo|da Vinci"),
    ("What is the chemical formula of water?", r"H2O|H₂O"),
    ("How many hours are there in a day?", r"\b24\b|twenty-four"),
    ("Which planet is known as the Red Planet?", r"Mars"),
    ("What is the largest ocean on Earth?", r"Pacific"),
    ("How many minutes are there in an hour?", r"\b60\b|sixty"),
    ("What is the tallest mountain in the world?", r"Everest"),
    ("Who was the first person to walk on the Moon?", r"Armstrong"),
    ("What language is spoken in Brazil?", r"Portuguese"),
    ("What is 2 plus 2?", r"\b4\b|\bfour\b"),
    ("What do bees make?", r"honey"),
    ("How many sides does a triangle have?", r"\b(3|three)\b"),
    ("Which animal is known as the king of the jungle?", r"lion"),
    ("What is the opposite of hot?", r"cold"),
)
# genai applies repetition_penalty to the prompt's tokens too (the question's own words), presence
# and frequency penalties only to the answer's. no_repeat_ngram_size is no candidate: genai 2026.4
# honours it in beam search only, and beam search cannot stream (measured: greedy ignores it).
GRID = (  # (repetition, frequency, presence penalty), each greedy
    (1.05, 0, 0), (1.1, 0, 0), (1.12, 0, 0), (1.15, 0, 0), (1.2, 0, 0),
    (1.0, 0.1, 0), (1.0, 0.2, 0), (1.0, 0.3, 0), (1.0, 0.5, 0), (1.0, 0, 0.3), (1.0, 0, 0.6),
    (1.05, 0.1, 0), (1.05, 0.15, 0), (1.05, 0.2, 0), (1.05, 0.3, 0), (1.05, 0, 0.6),
    (1.1, 0.05, 0), (1.1, 0.1, 0), (1.1, 0.15, 0), (1.1, 0.2, 0), (1.1, 0, 0.3), (1.1, 0, 0.6),
    (1.12, 0.05, 0), (1.12, 0.1, 0), (1.15, 0.05, 0), (1.15, 0.1, 0), (1.2, 0.1, 0),
    # Issue 31: penalties on the answer's tokens only (none on the prompt's), for the default that
    # replaced repetition 1.1 + frequency 0.2. Measured 2026-12-07 (docs/decoding.md): frequency
    # 0.6, frequency 0.3 + presence 0.6, frequency 0.5 + presence 0.5 (chosen); the others not yet.
    (1.0, 0.4, 0), (1.0, 0.6, 0), (1.0, 0.8, 0), (1.0, 1.0, 0), (1.0, 0, 1.0),
    (1.0, 0.3, 0.3), (1.0, 0.3, 0.6), (1.0, 0.5, 0.5), (1.0, 0.3, 1.0),
)


def _penalties(repetition: float, frequency: float, presence: float) -> dict:
    fields = {"repetition_penalty": repetition, "frequency_penalty": frequency, "presence_penalty": presence}
    return {k: v for k, v in fields.items() if v != (1.0 if k == "repetition_penalty" else 0)}


CANDIDATES = {  # name -> GenerationOptions fields
    "greedy (the seed's)": {},
    **{"greedy, " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in f.items()): f
       for f in (_penalties(*point) for point in GRID)},
    "sampling T 0.2, top-p 0.9, seed 0": {"do_sample": True, "temperature": 0.2, "top_p": 0.9, "seed": 0},
}
MAX_NEW_TOKENS = 256



def most_repeated_sentence(text: str) -> int:
    said = sentences(text)
    return max((said.count(s) for s in set(said)), default=0)


def measure(model: str | None, only: list[str] | None = None) -> dict:
    from ovchat import engine

    eng = engine.Engine.load(model)
    rows = {}
    for name, fields in CANDIDATES.items():
        if only and not any(part == name or (part in name and part not in CANDIDATES) for part in only):
            continue
        options = engine.GenerationOptions(max_new_tokens=MAX_NEW_TOKENS, **fields)
        started = time.perf_counter()
        answers = [_ask(eng, options, prompt, expected) for prompt, expected in PROMPTS]
        facts = [_ask(eng, options, prompt, expected) for prompt, expected in FACTS]
        known = [a for a in answers if a["correct"] is not None]
        rows[name] = {
            "options": fields,
            "ends_in_loop": sum(a["ends_in_loop"] for a in answers),
            "hit_token_limit": sum(a["finish_reason"] == "length" for a in answers),
            "factual_correct": f"{sum(a['correct'] for a in known)}/{len(known)}",
            "factual_first_sentence": f"{sum(a['correct_first_sentence'] for a in known)}/{len(known)}",
            "paris": answers[1]["correct"],
            "mean_tokens": round(sum(a["tokens"] for a in answers) / len(answers), 1),
            "facts_first_sentence": f"{sum(a['correct_first_sentence'] for a in facts)}/{len(facts)}",
            "facts_ends_in_loop": sum(a["ends_in_loop"] for a in facts),
            "seconds": round(time.perf_counter() - started, 1),
            "answers": answers,
            "facts": facts,
        }
    eng.close()
    return {"model": str(eng.info.path), "prompts": len(PROMPTS), "facts": len(FACTS), "max_new_tokens": MAX_NEW_TOKENS,
            "system_prompt": SYSTEM_PROMPT, "versions": _versions(), "candidates": rows}


def _ask(eng, options, prompt: str, expected: str | None) -> dict:
    result = eng.generate([{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}], options)
    text, first = result.text, (sentences(result.text) or [""])[0]
    return {"prompt": prompt, "text": text, "tokens": result.output_tokens, "finish_reason": result.finish_reason,
            "ends_in_loop": ends_in_loop(text, result.finish_reason == "length"),
            "most_repeated_sentence": most_repeated_sentence(text),
            "correct": None if expected is None else bool(re.search(expected, text, re.I)),
            "correct_first_sentence": None if expected is None else bool(re.search(expected, first, re.I))}


def table(report: dict) -> str:
    n, facts = report["prompts"], report.get("facts", 0)
    lines = ["| setting | answers ending in a loop | hit the token limit | factual right (anywhere) "
             "| (first sentence) | Paris | mean tokens | 20 more facts right (first sentence) | their loops |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, row in report["candidates"].items():
        lines.append(f"| {name} | {row['ends_in_loop']}/{n} | {row['hit_token_limit']}/{n} | {row['factual_correct']} "
                     f"| {row['factual_first_sentence']} | {'yes' if row['paris'] else 'NO'} | {row['mean_tokens']} "
                     f"| {row['facts_first_sentence']} | {row['facts_ends_in_loop']}/{facts} |")
    return "\n".join(lines)


def _versions() -> dict:
    from importlib.metadata import version
    return {name: version(name) for name in ("openvino", "openvino-genai")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="an exported folder or .gguf (default: the embedded default model)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "decoding-defaults.json")
    parser.add_argument("--only", action="append", metavar="TEXT",
                        help="measure only the setting named TEXT, or those whose name holds it when none is "
                             "(repeatable; --out then holds those only)")
    args = parser.parse_args(argv)
    report = measure(args.model, args.only)
    args.out.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    print(table(report))
    print(json.dumps({"decoding_defaults": {name: {k: row[k] for k in ("ends_in_loop", "hit_token_limit",
                                                                      "factual_correct", "factual_first_sentence", "paris",
                                                                      "facts_first_sentence", "facts_ends_in_loop")}
                                            for name, row in report["candidates"].items()}, "out": str(args.out)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
