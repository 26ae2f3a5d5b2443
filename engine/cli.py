"""Runtime subcommands of `ovchat`: generate, chat, demo, devices, info.

Without -m they use the embedded default model (`ovchat export default` prepares it).
OpenVINO is imported inside the handlers, when a command needs a model, not to parse flags.
"""

from __future__ import annotations

import json
import sys

from .errors import OptionsError

SEED_SYSTEM_PROMPT = "You are a helpful AI assistant."
SEED_PROMPT = "can you introduce yourself?"
CHAT_PROPERTIES = {"ATTENTION_BACKEND": "PA"}  # see cmd_chat


def register(sub) -> None:
    p = sub.add_parser("generate", help="answer one prompt")
    _add_model_flags(p)
    _add_generation_flags(p)
    p.add_argument("prompt")
    p.add_argument("--system", help="a system prompt")
    p.add_argument("--raw", action="store_true", help="send the prompt as is, without the chat template")
    p.add_argument("--json", action="store_true", help="print text, token counts and metrics as JSON")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("chat", help="interactive chat, streamed (/reset, /exit; Ctrl-C stops an answer)")
    _add_model_flags(p)
    _add_generation_flags(p)
    p.add_argument("--system", default=SEED_SYSTEM_PROMPT, help="the system prompt (default: %(default)r)")
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("demo", help="the seed's job: stream an answer to its prompt, then print the metrics")
    _add_model_flags(p)
    _add_generation_flags(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("devices", help="list the OpenVINO devices of this machine")
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser("info", help="describe a model (folder or .gguf)")
    p.add_argument("model", nargs="?", help="default: the embedded default model")
    p.set_defaults(func=cmd_info)


def _add_model_flags(p) -> None:
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


def _add_generation_flags(p) -> None:
    # No defaults here: a flag left out takes GenerationOptions' default.
    g = p.add_argument_group("generation")
    g.add_argument("-n", "--max-new-tokens", type=int, help="default: 256")
    g.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
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


def load_engine(args, defaults: dict | None = None):
    """The engine the flags ask for; `defaults` are properties that -P KEY=VALUE overrides."""
    from . import Engine
    properties = dict(defaults or {})
    for item in args.property:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise OptionsError(f"--property {item!r} must look like KEY=VALUE, e.g. KV_CACHE_PRECISION=u8.")
        properties[key] = value
    _progress(f"loading {args.model or 'the default model'} on {args.device}…")
    return Engine.load(args.model, device=args.device, performance_hint=args.hint, num_streams=args.streams,
                       cache_dir=False if args.no_cache else (args.cache_dir or True), warmup=not args.no_warmup,
                       prompt_lookup=args.prompt_lookup, draft_model=args.draft, **properties)


def generation_options(args, **overrides):
    from . import GenerationOptions
    given = dict(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                 top_k=args.top_k, repetition_penalty=args.repetition_penalty, seed=args.seed)
    values = {key: value for key, value in given.items() if value is not None}
    values.update(do_sample=args.sample, stop=tuple(args.stop), json_object=args.json_object, regex=args.regex,
                  json_schema=_read_flag_file(args.json_schema, "--json-schema"),
                  grammar=_read_flag_file(args.grammar, "--grammar"), **overrides)
    return GenerationOptions(**values)


def _read_flag_file(path: str | None, flag: str) -> str | None:
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as error:
        raise OptionsError(f"{flag} {path}: cannot read it ({error.strerror}); pass a readable file.") from None


def cmd_generate(args) -> int:
    options = generation_options(args, apply_chat_template=not args.raw)  # bad flags fail before the load
    engine = load_engine(args)
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
    return 0


def cmd_chat(args) -> int:
    options = generation_options(args)
    # An interactive chat runs many turns: on PagedAttention a turn's prefill stays flat as the
    # history grows, on SDPA (the engine's default) it slows, 2x by the 6th turn at Phi-3 scale.
    # PA's price is a slower start (Phi-3 shape: 15.9 vs 12.5 s, measured); from the measured
    # per-turn growth we estimate it is repaid within ~3 turns.
    from .options import has_attention_backends
    engine = load_engine(args, defaults=CHAT_PROPERTIES if has_attention_backends(args.device) else None)
    session = engine.chat(args.system, options)
    attention = engine.load_options.to_properties().get("ATTENTION_BACKEND")
    _progress(f"ready{f' (attention: {attention})' if attention else ''}. /reset clears the history, "
              "/exit (or Ctrl-D) leaves, Ctrl-C stops an answer.")
    while True:
        try:
            text = input("> ")
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if text.strip() == "/exit":
            return 0
        if text.strip() == "/reset":
            session.reset()
            _progress("history cleared.")
            continue
        if not text.strip():
            continue
        stream = session.stream(text)
        try:
            with stream:
                for piece in stream:
                    print(piece, end="", flush=True)
        except KeyboardInterrupt:
            print("\n[stopped]", end="")
        print()
        result = stream.result
        if result and result.dropped_messages:
            _progress(f"(the oldest {result.dropped_messages} messages were dropped to fit the context)")


def cmd_demo(args) -> int:
    options = generation_options(args)
    engine = load_engine(args)
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
          f"TPOT {r.metrics.tpot_ms:.1f} ms | {r.metrics.tokens_per_s:.1f} tokens/s")
    return 0


def cmd_devices(args) -> int:
    import openvino as ov
    from .devices import available_devices, core
    for name in available_devices():
        print(f"{name}\t{core().get_property(name, 'FULL_DEVICE_NAME')}")
    print(f"(OpenVINO {ov.get_version()}; GPU and NPU appear only with an Intel device and its driver)")
    return 0


def cmd_info(args) -> int:
    from .model import resolve
    info = resolve(args.model)
    data = {k: (str(v) if k == "path" else v) for k, v in vars(info).items()}
    print(json.dumps(data, indent=2, default=str))
    return 0


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
