"""Runtime subcommands of `ovchat`: generate, chat, demo, devices, info.

Without -m they use the embedded default model (`ovchat export default` prepares it).
Without decoding flags, answers use the model's recommended settings
(`ModelInfo.generation_defaults`: its generation_config.json, else measured repetition and
frequency penalties); `--greedy` gives plain greedy decoding, as `GenerationOptions()` does.
OpenVINO is imported inside the handlers, when a command needs a model, not to parse flags.
"""

from __future__ import annotations

import dataclasses
import json
import sys

from .errors import EngineError, OptionsError

SEED_SYSTEM_PROMPT = "You are a helpful AI assistant."
SEED_PROMPT = "can you introduce yourself?"
CHAT_PROPERTIES = {"ATTENTION_BACKEND": "PA"}  # see cmd_chat


def register(sub) -> None:
    p = sub.add_parser("generate", help="answer one prompt")
    add_model_flags(p)
    _add_generation_flags(p)
    p.add_argument("prompt")
    p.add_argument("--system", help="a system prompt")
    p.add_argument("--raw", action="store_true", help="send the prompt as is, without the chat template")
    p.add_argument("--json", action="store_true", help="print text, token counts and metrics as JSON")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("chat", help="interactive chat, streamed (/reset, /exit; Ctrl-C stops an answer)")
    add_model_flags(p)
    _add_generation_flags(p)
    p.add_argument("--system", default=SEED_SYSTEM_PROMPT, help="the system prompt (default: %(default)r)")
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("demo", help="the seed's job: stream an answer to its prompt, then print the metrics")
    add_model_flags(p)
    _add_generation_flags(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("devices", help="list the OpenVINO devices of this machine")
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser("info", help="describe a model (folder or .gguf)")
    p.add_argument("model", nargs="?", help="default: the embedded default model")
    p.add_argument("--verify", action="store_true",
                   help="check every file against the size and sha256 recorded at export (exit 1 if one differs)")
    p.set_defaults(func=cmd_info)


def add_model_flags(p) -> None:
    g = p.add_argument_group("model and device")
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


def _add_generation_flags(p) -> None:
    # No defaults here: a decoding flag left out takes the model's recommended value
    # (ModelInfo.generation_defaults), any other flag GenerationOptions' default.
    from .model import DEFAULT_DECODING
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
    g.add_argument("--tool-choice", default="auto", help="auto, none, required, or a tool's name, for your turns "
                   "(default: auto; the answer after tool results is always auto)")


def load_engine(args, defaults: dict | None = None, **load_options):
    """The engine the flags ask for; `defaults` are properties that -P KEY=VALUE overrides;
    `load_options` go to Engine.load as they are (e.g. batching=...)."""
    from . import Engine
    _progress(f"loading {args.model or 'the default model'} on {args.device}…")
    return Engine.load(**load_arguments(args, defaults), **load_options)


def load_arguments(args, defaults: dict | None = None) -> dict:
    """Engine.load's keyword arguments for the model flags (see load_engine)."""
    properties = dict(defaults or {})
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
    recommended values (unless --greedy). Called once before the load to check the flags."""
    from . import GenerationOptions
    given = dict(max_new_tokens=args.max_new_tokens, do_sample=args.sample, temperature=args.temperature,
                 top_p=args.top_p, top_k=args.top_k, repetition_penalty=args.repetition_penalty, seed=args.seed)
    values = dict(info.generation_defaults) if info is not None and not args.greedy else {}
    values.update({key: value for key, value in given.items() if value is not None})
    values.update(stop=tuple(args.stop), json_object=args.json_object, regex=args.regex,
                  json_schema=_read_flag_file(args.json_schema, "--json-schema"),
                  grammar=_read_flag_file(args.grammar, "--grammar"), **_tool_flags(args), **overrides)
    return GenerationOptions(**values)


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


def cmd_generate(args) -> int:
    generation_options(args)  # bad flags fail before the load
    engine = load_engine(args)
    options = generation_options(args, engine.info, apply_chat_template=not args.raw)
    prompt = args.prompt
    if args.system and not args.raw:
        prompt = [{"role": "system", "content": args.system}, {"role": "user", "content": args.prompt}]
    if args.json:
        result = engine.generate(prompt, options)
        print(json.dumps({**result.to_dict(), "load": vars(engine.load_metrics), "device": engine.load_options.device}))
        return 0
    with engine.stream(prompt, options) as stream:
        for piece in stream:
            print(piece, end="", flush=True)
    print()
    for call in stream.result.tool_calls:
        print(json.dumps({"tool_call": {"id": call.id, "name": call.name, "arguments": call.arguments}}))
    return 0


def cmd_chat(args) -> int:
    generation_options(args)  # bad flags fail before the load
    # An interactive chat runs many turns: on PagedAttention a turn's prefill stays flat as the
    # history grows, on SDPA (the engine's default) it slows, 2x by the 6th turn at Phi-3 scale.
    # PA's price is a slower start (Phi-3 shape: 15.9 vs 12.5 s, measured); from the measured
    # per-turn growth we estimate it is repaid within ~3 turns.
    from .options import has_attention_backends
    engine = load_engine(args, defaults=CHAT_PROPERTIES if has_attention_backends(args.device) else None)
    session = engine.chat(args.system, generation_options(args, engine.info))
    attention = engine.load_options.to_properties().get("ATTENTION_BACKEND")
    _progress(f"ready{f' (attention: {attention})' if attention else ''}. /reset clears the history, "
              "/exit (or Ctrl-D) leaves, Ctrl-C stops an answer.")

    after_tools = dataclasses.replace(session.options, tool_choice="auto") if session.options.offers_tools else None

    def answer(text: str | None) -> None:
        # --tool-choice applies to your turns; the answer after tool results may call again or reply ("auto")
        stream = session.stream(text, after_tools if text is None else None)
        with stream:
            for piece in stream:
                print(piece, end="", flush=True)
        print()
        if stream.result.dropped_messages:
            _progress(f"(the oldest {stream.result.dropped_messages} messages were dropped to fit the context)")
        if stream.result.tool_calls:  # --tools: you play the tools, then the model answers
            for call in stream.result.tool_calls:
                try:
                    output = input(f"[{call.name}({json.dumps(call.arguments)})] result> ")
                except EOFError:
                    return
                session.add_tool_result(call.id, output)
            answer(None)

    return chat_loop(answer, session.reset)


def chat_loop(answer, reset) -> int:
    """The interactive prompt of `ovchat chat`, local or `--server`: `answer(text)` streams one
    turn (Ctrl-C stops it), /reset calls `reset()`, /exit or Ctrl-D leaves."""
    while True:
        try:
            text = input("> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if text == "/exit":
            return 0
        if text == "/reset":
            reset()
            _progress("history cleared.")
        elif text:
            try:
                answer(text)
            except KeyboardInterrupt:
                print("\n[stopped]")
            except EngineError as error:  # this turn failed (too long, a template refusal...): the chat goes on
                print()
                _progress(f"ovchat: {error}")


def cmd_demo(args) -> int:
    generation_options(args)  # bad flags fail before the load
    engine = load_engine(args)
    options = generation_options(args, engine.info)
    print(f"[system] {SEED_SYSTEM_PROMPT}\n[user] {SEED_PROMPT}\n[assistant] ", end="", flush=True)
    session = engine.chat(SEED_SYSTEM_PROMPT, options)
    with session.stream(SEED_PROMPT) as stream:
        for piece in stream:
            print(piece, end="", flush=True)
    print()
    r, load = stream.result, engine.load_metrics
    print(f"\nmodel {engine.info.path} on {engine.load_options.device}\n"
          f"load {load.load_ms:.0f} ms (+ warm-up {load.warmup_ms:.0f} ms) | prompt {r.input_tokens} tokens, "
          f"answer {r.output_tokens} tokens ({r.finish_reason}) | TTFT {r.metrics.ttft_ms:.1f} ms | "
          f"TPOT {r.metrics.tpot_ms:.1f} ms | {r.metrics.tokens_per_s:.1f} tokens/s\n"
          f"decoding {_describe_decoding(options)}")
    return 0


def _describe_decoding(options) -> str:
    if options.greedy:
        way = "greedy"
    else:
        way = f"sampling (temperature {options.temperature}, top-p {options.top_p}, top-k {options.top_k or 'off'})"
    if options.repetition_penalty != 1.0:
        way += f", repetition penalty {options.repetition_penalty}"
    for name in ("frequency_penalty", "presence_penalty"):
        if getattr(options, name):
            way += f", {name.replace('_', ' ')} {getattr(options, name)}"
    return way + " (--greedy for plain greedy; other flags in --help)"


def cmd_devices(args) -> int:
    import openvino as ov
    from .devices import available_devices, core
    for name in available_devices():
        print(f"{name}\t{core().get_property(name, 'FULL_DEVICE_NAME')}")
    print(f"(OpenVINO {ov.get_version()}; GPU and NPU appear only with an Intel device and its driver)")
    return 0


def cmd_info(args) -> int:
    from .model import MANIFEST, reexport_command, resolve, verify
    info = resolve(args.model)
    data = {k: (str(v) if k == "path" else v) for k, v in vars(info).items()}
    data["generation_defaults"] = info.generation_defaults
    print(json.dumps(data, indent=2, default=str))
    if not args.verify:
        return 0
    problems = verify(info)
    for problem in problems:
        print(f"DAMAGED: {problem}", file=sys.stderr)
    if problems:
        print(f"re-export the model: {reexport_command(info)}", file=sys.stderr)
        return 1
    recorded = len((info.manifest or {}).get("files") or {})
    if recorded:
        print(f"verified: {recorded} files match the sizes and sha256 in {MANIFEST}", file=sys.stderr)
    elif info.format == "gguf":
        print("a .gguf file has no ovchat.json: nothing recorded to verify against", file=sys.stderr)
    else:
        print(f"weights complete, but {MANIFEST} records no file hashes (an older or foreign export); "
              f"re-export to make it fully verifiable: {reexport_command(info)}", file=sys.stderr)
    return 0


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
