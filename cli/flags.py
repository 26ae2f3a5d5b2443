"""The flags every model-running subcommand shares, and what they become.

Model flags (-m, -d, --hint, -P KEY=VALUE...) become Engine.load's keyword arguments
(`load_arguments`); generation flags (-n, --sample/--greedy, --temperature, structured output,
--tools...) become a GenerationOptions (`generation_options`). Without decoding flags, answers
use the model's recommended settings (`ModelInfo.generation_defaults`: its
generation_config.json, else measured penalties on the answer's own tokens; none inside
structured output or tool calls: engine/decoding.py); `--greedy` gives plain greedy decoding, as
`GenerationOptions()` does. Parsing imports no OpenVINO.
"""

from __future__ import annotations

import json

from ..engine.errors import OptionsError


def add_model_flags(p, many: bool = False) -> None:
    g = p.add_argument_group("model and device")
    if many:  # `ovchat serve`: several models, each loaded on demand
        g.add_argument("-m", "--model", action="append", metavar="[NAME=]MODEL",
                       help="exported folder, .gguf file, or the name of a model in ovchat's cache (`ovchat list`); "
                            "repeat to serve several, each loaded on demand (default: the embedded default model)")
    else:
        g.add_argument("-m", "--model", help="exported folder or .gguf file (default: the embedded default model)")
    g.add_argument("-d", "--device", default="CPU", help="CPU, GPU, GPU.N, NPU, AUTO, HETERO:... (default: CPU)")
    g.add_argument("--hint", default="LATENCY", help="PERFORMANCE_HINT (default: LATENCY)")
    g.add_argument("--streams", type=int, default=1, help="NUM_STREAMS (default: 1)")
    g.add_argument("--cache-dir", help="CACHE_DIR for compiled models (default: ovchat's cache)")
    g.add_argument("--no-cache", action="store_true", help="compile from the IR every time, cache nothing")
    g.add_argument("-P", "--property", action="append", default=[], metavar="KEY=VALUE",
                   help="any other OpenVINO/LLMPipeline property, repeatable")
    g.add_argument("--no-warmup", action="store_true", help="skip the warm-up inference at load")
    g.add_argument("--prompt-lookup", action="store_true",
                   help="speculative decoding with guesses copied from the prompt (edits, extraction, summaries)")
    g.add_argument("--draft", metavar="MODEL", help="speculative decoding with a smaller model of the same tokenizer")
    g.add_argument("--deterministic", action="store_true",
                   help="f32 arithmetic without dynamic quantization: a greedy answer does not depend on what runs "
                        "beside it (batch, cached prefix, speculation); fewer tokens/s at many streams (README)")


def add_generation_flags(p) -> None:
    # No defaults here: a decoding flag left out takes the model's recommended value
    # (ModelInfo.generation_defaults), any other flag GenerationOptions' default.
    from ..engine.decoding import DEFAULT_DECODING
    g = p.add_argument_group("generation (default: the model's generation_config.json, else greedy with "
                             + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in DEFAULT_DECODING.items()) + ")")
    g.add_argument("-n", "--max-new-tokens", type=int, help="default: 256")
    choice = g.add_mutually_exclusive_group()
    choice.add_argument("--sample", action="store_true", default=None, help="sample instead of greedy decoding")
    choice.add_argument("--greedy", action="store_true",
                        help="plain greedy decoding: no sampling, no penalties, whatever the model suggests")
    g.add_argument("--temperature", type=float)
    g.add_argument("--top-p", type=float)
    g.add_argument("--top-k", type=int)
    g.add_argument("--repetition-penalty", type=float)
    g.add_argument("--seed", type=int)
    g.add_argument("--stop", action="append", default=[], help="a stop string, repeatable")
    g.add_argument("--json-schema", metavar="FILE", help="answer JSON that validates against this JSON schema")
    g.add_argument("--json-object", action="store_true", help="answer any JSON object")
    g.add_argument("--regex", metavar="R", help="answer text that matches this regular expression")
    g.add_argument("--grammar", metavar="FILE", help="answer text that this EBNF grammar (XGrammar's dialect) accepts")
    g.add_argument("--tools", metavar="FILE", help="offer these tools: a JSON list of OpenAI function definitions; "
                   "the chat asks you for each call's result")
    g.add_argument("--thinking", choices=["show", "hide", "off"], default="show",
                   help="a thinking model's reasoning (Qwen 3, DeepSeek-R1 distills): shown dimmed before the answer "
                        "(on stderr when the output is not a terminal), hidden, or turned off where its template "
                        "can (default: %(default)s)")
    g.add_argument("--tool-choice", default="auto", help="auto, none, required, or a tool's name, for your turns "
                   "(default: auto; the answer after tool results is always auto)")


def load_arguments(args) -> dict:
    """Engine.load's keyword arguments for the model flags."""
    properties = {}
    for item in args.property:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise OptionsError(f"--property {item!r} must look like KEY=VALUE, e.g. KV_CACHE_PRECISION=u8.")
        properties[key] = value
    return dict(model=args.model, device=args.device, performance_hint=args.hint, num_streams=args.streams,
                cache_dir=False if args.no_cache else (args.cache_dir or True), warmup=not args.no_warmup,
                prompt_lookup=args.prompt_lookup, draft_model=args.draft, deterministic=args.deterministic, **properties)


def generation_options(args, info=None, **overrides):
    """The flags' GenerationOptions; with a ModelInfo, decoding flags left out take its
    recommended values (unless --greedy) by the engine's rule (engine/decoding.py: none of its
    penalties with --json-schema, --json-object, --regex, --grammar or --tools). Called once
    before the load to check the flags."""
    from ..engine.decoding import recommended_options
    defaults = info.generation_defaults if info is not None and not args.greedy else {}
    given = dict(max_new_tokens=args.max_new_tokens, do_sample=args.sample, temperature=args.temperature,
                 top_p=args.top_p, top_k=args.top_k, repetition_penalty=args.repetition_penalty, seed=args.seed,
                 stop=tuple(args.stop), json_object=args.json_object, regex=args.regex,
                 json_schema=_read_flag_file(args.json_schema, "--json-schema"),
                 grammar=_read_flag_file(args.grammar, "--grammar"), **_tool_flags(args),
                 thinking=False if getattr(args, "thinking", "show") == "off" else None)
    return recommended_options(defaults, **{**given, **overrides})


def _tool_flags(args) -> dict:
    text = _read_flag_file(getattr(args, "tools", None), "--tools")
    if text is None:
        return {}
    try:
        tools = json.loads(text)
    except json.JSONDecodeError as error:
        raise OptionsError(f"--tools {args.tools}: not JSON ({error}); pass a JSON list of function definitions.") from None
    tools = tools.get("tools", tools) if isinstance(tools, dict) else tools
    return {"tools": tools, "tool_choice": args.tool_choice}


def _read_flag_file(path: str | None, flag: str) -> str | None:
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as error:
        raise OptionsError(f"{flag} {path}: cannot read it ({error.strerror}); pass a readable file.") from None
