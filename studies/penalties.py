"""Which tokens genai's penalties weigh, and what the decoding a request gets when it leaves the
penalties out does to answers that must repeat the prompt's words (issue 31).

    python -m studies.penalties [--out FILE]      # from a checkout's root; ~3 minutes

1. **Scope** (no model weights): a model whose logits are constants (token A 2.0, B 1.5, every
   other -20; the same with A -1.0, B -1.5) on the default model's tokenizer, greedy, 4 tokens.
   A prompt that holds A tells whether a penalty counts the prompt's tokens (repetition 2.0: A's
   2.0 becomes 1.0 < 1.5, so B comes first if it does); the answer's tokens, whether it counts
   those (A, A, B... as the penalty adds up); the negative logits, what it does below zero.
2. **The default model's first token** after 8 raw prompts (no chat template) whose next token
   is one the prompt holds ("Paris, Paris, Paris," then " Paris"), under no penalty and each
   penalty: one that counts only the answer's tokens cannot change the first token (nothing is
   generated yet); one that counts the prompt's can.
3. **Issue 31's three cases**, through the server (`create_app`, batching mode, 127.0.0.1, the
   openai client), temperature 0, each under the old defaults (repetition 1.1 + frequency 0.2,
   sent explicitly: what a request that left them out got before), the request leaving the
   penalties out (today's rule, engine/decoding.py), and no penalty (sent explicitly):
   (a) response_format json_object, "Return a JSON object with keys name and country for the
   city of Paris.", 64 tokens: valid JSON holding "Paris"?; (b) tool_choice "required", the
   weather in Paris (studies/tool_calls.py's five tools), 96 tokens: every call's city "Paris"?;
   (c) 16 short factual questions (tests/test_server.py's), 24 tokens: answers holding their word.
Prints the tables, writes everything as JSON, ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

A, B = 100, 200  # the two tokens of the constant-logits model
SCOPE_CASES = (  # (label, logits of A and B, prompt ids, penalty field, value)
    ("none, A in the prompt", (2.0, 1.5), (5, A), None, None),
    ("repetition 2.0, A in the prompt", (2.0, 1.5), (5, A), "repetition_penalty", 2.0),
    ("repetition 2.0, A not in the prompt", (2.0, 1.5), (5, 6), "repetition_penalty", 2.0),
    ("frequency 0.3, A in the prompt", (2.0, 1.5), (5, A), "frequency_penalty", 0.3),
    ("frequency 1.0, A in the prompt", (2.0, 1.5), (5, A), "frequency_penalty", 1.0),
    ("presence 1.0, A in the prompt", (2.0, 1.5), (5, A), "presence_penalty", 1.0),
    ("none, negative logits", (-1.0, -1.5), (5, 6), None, None),
    ("frequency 1.0, negative logits", (-1.0, -1.5), (5, 6), "frequency_penalty", 1.0),
    ("presence 1.0, negative logits", (-1.0, -1.5), (5, 6), "presence_penalty", 1.0),
    ("repetition 2.0, negative logits, A in the prompt", (-1.0, -1.5), (5, A), "repetition_penalty", 2.0),
)
QUESTIONS = [  # tests/test_server.py's 16 (question, the word a right answer holds)
    ("What is the capital of France?", "Paris"), ("What is the capital of Japan?", "Tokyo"),
    ("What is the capital of Germany?", "Berlin"), ("What is the capital of Russia?", "Moscow"),
    ("What is the chemical symbol for water?", "H2O"), ("Who wrote Romeo and Juliet?", "Shakespeare"),
    ("What is the capital of England?", "London"), ("What is the capital of China?", "Beijing"),
    ("What is the capital of Egypt?", "Cairo"), ("Which planet is known as the Red Planet?", "Mars"),
    ("What is the capital of Canada?", "Ottawa"), ("What is the capital of Greece?", "Athens"),
    ("Who developed the theory of relativity?", "Einstein"), ("What is the capital of Austria?", "Vienna"),
    ("What is the capital of Poland?", "Warsaw"), ("What is the capital of Sweden?", "Stockholm"),
]
COPY_PROMPTS = (  # raw text whose likely next token is already in it
    "Paris, Paris, Paris, Paris, Paris,", "one two three one two three one two",
    "red green blue red green blue red green", "The capital of France is Paris. The capital of France is",
    "Monday Tuesday Wednesday Monday Tuesday Wednesday Monday", "cat dog cat dog cat dog cat",
    "1, 2, 3, 1, 2, 3, 1, 2,", "Hello world. Hello world. Hello",
)
FIRST_TOKEN = {"none": {}, "repetition 1.1": {"repetition_penalty": 1.1}, "repetition 1.5": {"repetition_penalty": 1.5},
               "old defaults (repetition 1.1, frequency 0.2)": {"repetition_penalty": 1.1, "frequency_penalty": 0.2},
               "frequency 2.0": {"frequency_penalty": 2.0}, "presence 2.0": {"presence_penalty": 2.0}}
JSON_PROMPT = "Return a JSON object with keys name and country for the city of Paris."
WEATHER_PROMPT = "What's the weather like in Paris right now?"
DECODINGS = {  # label -> request fields (openai client keyword arguments)
    "old defaults (repetition 1.1, frequency 0.2)": dict(frequency_penalty=0.2, extra_body={"repetition_penalty": 1.1}),
    "left out (today's defaults)": {},
    "no penalty": dict(frequency_penalty=0, presence_penalty=0, extra_body={"repetition_penalty": 1.0}),
}


def json_holds(text: str, word: str) -> tuple[bool, bool]:
    """(the text is one valid JSON object, some string value in it holds `word`)."""
    try:
        value = json.loads(text)
    except ValueError:
        return False, False
    if not isinstance(value, dict):
        return False, False
    return True, word in json.dumps(value, ensure_ascii=False)


def calls_name(calls: list[dict], key: str, word: str) -> bool:
    """Whether there is a call and every call's argument `key` is `word`."""
    return bool(calls) and all(isinstance(c["arguments"], dict) and c["arguments"].get(key) == word for c in calls)


def right(answers: list[str], words: list[str]) -> int:
    return sum(word.lower() in answer.lower() for answer, word in zip(answers, words))


def scope(tokenizer_dir: Path) -> list[dict]:
    from tests.constant_logits import constant_logits_pipeline, greedy_tokens

    pipelines, rows = {}, []
    for label, logits, prompt, field, value in SCOPE_CASES:
        if logits not in pipelines:
            pipelines[logits] = constant_logits_pipeline(tokenizer_dir, {A: logits[0], B: logits[1]})
        tokens = greedy_tokens(pipelines[logits], list(prompt), **({field: value} if field else {}))
        rows.append({"case": label, "logits": logits, "prompt_holds_A": A in prompt,
                     "tokens": ["A" if t == A else "B" if t == B else str(t) for t in tokens]})
    return rows


def first_tokens(engine) -> dict:
    from ovchat.engine import GenerationOptions

    firsts = {label: [engine.generate(prompt, GenerationOptions(max_new_tokens=1, apply_chat_template=False, **fields)).text
                      for prompt in COPY_PROMPTS] for label, fields in FIRST_TOKEN.items()}
    return {label: {"first_tokens": texts, "differ_from_none": sum(a != b for a, b in zip(texts, firsts["none"]))}
            for label, texts in firsts.items()}


def issue_cases(url: str) -> dict:
    import openai

    from studies.tool_calls import TOOLS

    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=300)
    model = client.models.list().data[0].id
    out = {}
    for label, fields in DECODINGS.items():
        ask = dict(model=model, temperature=0, **fields)
        reply = client.chat.completions.create(messages=[{"role": "user", "content": JSON_PROMPT}], max_tokens=64,
                                               response_format={"type": "json_object"}, **ask)
        json_text = reply.choices[0].message.content
        valid, paris = json_holds(json_text, "Paris")
        reply = client.chat.completions.create(messages=[{"role": "user", "content": WEATHER_PROMPT}], max_tokens=96,
                                               tools=TOOLS, tool_choice="required", **ask)
        calls = [{"name": c.function.name, "arguments": _arguments(c.function.arguments)}
                 for c in reply.choices[0].message.tool_calls or []]
        answers = [client.chat.completions.create(messages=[{"role": "user", "content": q}], max_tokens=24, **ask)
                   .choices[0].message.content for q, _ in QUESTIONS]
        out[label] = {
            "json": {"text": json_text, "valid": valid, "holds_paris": paris},
            "tool": {"calls": calls, "every_city_paris": calls_name(calls, "city", "Paris")},
            "facts": {"answers": answers, "right": right(answers, [w for _, w in QUESTIONS]), "of": len(QUESTIONS)},
        }
    return out


def _arguments(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="write everything here as JSON")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the server tests' harness
    from server_harness import running_server

    import openvino_genai
    from ovchat.engine import BatchOptions, Engine, default_model_dir

    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    report = {"started": started, "load_average_start": _load(), "genai": openvino_genai.__version__,
              "machine": platform.processor() or platform.machine()}
    report["scope"] = scope(default_model_dir())
    print("| case (greedy, 4 tokens) | tokens |\n|---|---|")
    for row in report["scope"]:
        print(f"| {row['case']} | {' '.join(row['tokens'])} |")

    with running_server(lambda: Engine.load(None, batching=BatchOptions(max_sequences=4)), max_concurrency=4) as (url, _):
        report["issue_cases"] = issue_cases(url)
    single = Engine.load(None)
    report["first_token"] = first_tokens(single)
    single.close()
    report["load_average_end"] = _load()

    print(f"\n| penalty | first tokens of {len(COPY_PROMPTS)} that differ from no penalty's | they |\n|---|---|---|")
    for label, row in report["first_token"].items():
        print(f"| {label} | {row['differ_from_none']}/{len(COPY_PROMPTS)} | {row['first_tokens']} |")
    print("\n| decoding | (a) JSON valid, holds Paris | (b) every call's city Paris | (c) right of 16 |\n|---|---|---|---|")
    for label, row in report["issue_cases"].items():
        print(f"| {label} | {row['json']['valid']}, {row['json']['holds_paris']} | {row['tool']['every_city_paris']} "
              f"| {row['facts']['right']}/16 |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps({"penalties": {label: {"json_valid": r["json"]["valid"], "json_paris": r["json"]["holds_paris"],
                                            "tool_city_paris": r["tool"]["every_city_paris"], "facts_right": r["facts"]["right"]}
                                    for label, r in report["issue_cases"].items()},
                      "first_token_differs": {k: v["differ_from_none"] for k, v in report["first_token"].items()},
                      "out": str(args.out) if args.out else None}))
    return 0


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


if __name__ == "__main__":
    raise SystemExit(main())
