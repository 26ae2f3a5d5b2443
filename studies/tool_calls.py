"""Do the default model's tool calls parse, and does it pick the right tool? Guided (the
structural-tag grammar, tool_grammar.py) against unguided (the same prompt, calls only parsed),
for tool_choice "required" and "auto".

    python -m studies.tool_calls [--model DIR] [--out FILE]     # from a checkout's root
    python -m studies.tool_calls --tool-format llama3_pythonic  # calls in another format

20 prompts written for this, each with the one tool of five that answers it (weather,
arithmetic, unit conversion, web search, time zones). Greedy decoding, 96 new tokens, one call
expected (parallel_tool_calls=False, plus one row with parallel calls allowed). Per mode:
answers with a call, answers whose every call is valid (it parses, names an offered tool, and
its arguments validate against that tool's schema with `jsonschema`), and answers whose first
call is the expected tool. Prints a table, writes every answer as JSON, ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path


def _tool(name: str, description: str, properties: dict, required: list[str]) -> dict:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {
        "type": "object", "properties": properties, "required": required, "additionalProperties": False}}}


TOOLS = [
    _tool("get_weather", "Get the current weather in a city.",
          {"city": {"type": "string", "maxLength": 40}, "unit": {"enum": ["celsius", "fahrenheit"]}}, ["city"]),
    _tool("calculate", "Evaluate an arithmetic expression such as 12 * (3 + 4).",
          {"expression": {"type": "string", "maxLength": 60}}, ["expression"]),
    _tool("convert_units", "Convert a quantity from one unit to another.",
          {"value": {"type": "number"}, "from_unit": {"type": "string", "maxLength": 20},
           "to_unit": {"type": "string", "maxLength": 20}}, ["value", "from_unit", "to_unit"]),
    _tool("web_search", "Search the web and return the top results.",
          {"query": {"type": "string", "maxLength": 80}}, ["query"]),
    _tool("get_time", "Get the current local time in a time zone or city.",
          {"timezone": {"type": "string", "maxLength": 40}}, ["timezone"]),
]
PROMPTS = (  # (prompt, the tool that answers it)
    ("What's the weather like in Paris right now?", "get_weather"),
    ("Is it raining in London today?", "get_weather"),
    ("How hot is it in Tokyo, in fahrenheit?", "get_weather"),
    ("Tell me the temperature in Berlin.", "get_weather"),
    ("What is 1234 times 5678?", "calculate"),
    ("Compute (17 + 25) * 3.", "calculate"),
    ("What is the square root of 144 plus 10?", "calculate"),
    ("Divide 987 by 21.", "calculate"),
    ("Convert 5 miles to kilometers.", "convert_units"),
    ("How many pounds is 70 kilograms?", "convert_units"),
    ("What is 100 degrees Fahrenheit in Celsius?", "convert_units"),
    ("Convert 3 liters to gallons.", "convert_units"),
    ("Search the web for the latest OpenVINO release notes.", "web_search"),
    ("Find recent news about the James Webb telescope.", "web_search"),
    ("Look up who won the 2022 football World Cup.", "web_search"),
    ("Search for a good recipe for banana bread.", "web_search"),
    ("What time is it in New York?", "get_time"),
    ("What's the current time in Sydney?", "get_time"),
    ("Tell me the local time in Asia/Kolkata.", "get_time"),
    ("What time is it now in UTC?", "get_time"),
)
MODES = (  # (label, tool_choice, guided, parallel calls allowed)
    ("required, guided", "required", True, False),
    ("required, unguided", "required", False, False),
    ("auto, guided", "auto", True, False),
    ("auto, unguided", "auto", False, False),
    ("required, guided, parallel allowed", "required", True, True),
)
MAX_NEW_TOKENS = 96


def valid_call(call, schemas: dict) -> bool:
    import jsonschema

    if call.name not in schemas:
        return False
    try:
        jsonschema.validate(call.arguments, schemas[call.name])
    except jsonschema.ValidationError:
        return False
    return True


def run_mode(engine, tool_choice: str, guided: bool, parallel: bool, tool_format: str | None = None) -> list[dict]:
    from ovchat.engine import GenerationOptions

    options = GenerationOptions(max_new_tokens=MAX_NEW_TOKENS, tools=TOOLS, tool_choice=tool_choice,
                                constrain_tool_calls=guided, parallel_tool_calls=parallel, tool_format=tool_format)
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    answers = []
    for prompt, expected in PROMPTS:
        result = engine.generate(prompt, options)
        calls = result.tool_calls
        answers.append({
            "prompt": prompt, "expected": expected, "text": result.text, "finish_reason": result.finish_reason,
            "calls": [{"name": c.name, "arguments": c.arguments} for c in calls],
            "called": bool(calls), "valid": bool(calls) and all(valid_call(c, schemas) for c in calls),
            "right_tool": bool(calls) and calls[0].name == expected,
        })
    return answers


def summary(answers: list[dict]) -> dict:
    return {"called": sum(a["called"] for a in answers), "valid": sum(a["valid"] for a in answers),
            "right_tool": sum(a["right_tool"] for a in answers),
            "calls_per_answer": round(sum(len(a["calls"]) for a in answers) / len(answers), 2),
            "hit_limit": sum(a["finish_reason"] == "length" for a in answers), "of": len(answers)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: the embedded default model)")
    parser.add_argument("--out", type=Path, default=None, help="write every answer here as JSON")
    parser.add_argument("--tool-format", default=None, help="the calls' format (default: the one the template names)")
    args = parser.parse_args(argv)

    import openvino_genai

    import ovchat

    engine = ovchat.Engine.load(args.model)
    report = {"model": str(engine.info.path), "genai": openvino_genai.__version__, "machine": platform.processor()
              or platform.machine(), "max_new_tokens": MAX_NEW_TOKENS,
              "tool_format": args.tool_format, "modes": {}}
    print(f"| mode | answers with a call | every call valid | right tool | calls per answer | hit {MAX_NEW_TOKENS} tokens |")
    print("|---|---|---|---|---|---|")
    for label, choice, guided, parallel in MODES:
        start = time.perf_counter()
        answers = run_mode(engine, choice, guided, parallel, args.tool_format)
        counts = summary(answers)
        report["modes"][label] = {**counts, "seconds": round(time.perf_counter() - start, 1), "answers": answers}
        n = counts["of"]
        print(f"| {label} | {counts['called']}/{n} | {counts['valid']}/{n} | {counts['right_tool']}/{n} | "
              f"{counts['calls_per_answer']} | {counts['hit_limit']}/{n} |", flush=True)
        if args.out:  # after each mode: a long run that is stopped keeps what it measured
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=1, ensure_ascii=False))
    print(json.dumps({label: {k: v for k, v in mode.items() if k != "answers"} for label, mode in report["modes"].items()}))
    engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
