"""Subcommands on a model loaded in this process: generate, chat, demo, devices, info.

Without -m they use the embedded default model (`ovchat export default` prepares it). OpenVINO is
imported inside the handlers, when a command needs a model, not to parse flags.
"""

from __future__ import annotations

import dataclasses
import json
import sys

from ..engine.errors import EngineError
from .flags import add_generation_flags, add_model_flags, generation_options, load_arguments

SEED_SYSTEM_PROMPT = "You are a helpful AI assistant."
SEED_PROMPT = "can you introduce yourself?"


def register(sub) -> None:
    p = sub.add_parser("generate", help="answer one prompt")
    add_model_flags(p)
    add_generation_flags(p)
    p.add_argument("prompt")
    p.add_argument("--system", help="a system prompt")
    p.add_argument("--raw", action="store_true", help="send the prompt as is, without the chat template")
    p.add_argument("--json", action="store_true", help="print text, token counts and metrics as JSON")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("chat", help="interactive chat, streamed (/reset, /exit; Ctrl-C stops an answer)")
    add_model_flags(p)
    add_generation_flags(p)
    p.add_argument("--system", default=SEED_SYSTEM_PROMPT, help="the system prompt (default: %(default)r)")
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("demo", help="the seed's job: stream an answer to its prompt, then print the metrics")
    add_model_flags(p)
    add_generation_flags(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("devices", help="list the OpenVINO devices of this machine")
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser("info", help="describe a model (folder or .gguf)")
    p.add_argument("model", nargs="?", help="default: the embedded default model")
    p.add_argument("--verify", action="store_true",
                   help="check every file against the size and sha256 recorded at export (exit 1 if one differs)")
    p.set_defaults(func=cmd_info)


def load_engine(args, **load_options):
    """The engine the flags ask for; `load_options` go to Engine.load as they are (e.g. for_chat=True)."""
    from ..engine import Engine
    progress(f"loading {args.model or 'the default model'} on {args.device}…")
    return Engine.load(**load_arguments(args), **load_options)


def cmd_generate(args) -> int:
    generation_options(args)  # bad flags fail before the load
    engine = load_engine(args)
    options = generation_options(args, engine.info, apply_chat_template=not args.raw)
    prompt = args.prompt
    if not args.raw and not engine.tokenizer.chat_template:  # a base model's GGUF, say: it continues the text
        if args.system:
            raise EngineError("This model has no chat template, so it has no system prompt; drop --system.")
        progress("(this model has no chat template: it completes the prompt as raw text)")
    elif args.system and not args.raw:
        prompt = [{"role": "system", "content": args.system}, {"role": "user", "content": args.prompt}]
    if args.json:
        result = engine.generate(prompt, options)
        print(json.dumps({**result.to_dict(), "load": vars(engine.load_metrics), "device": engine.load_options.device}))
        return 0
    with engine.stream(prompt, options) as stream:
        print_answer(stream, args.thinking)
    for call in stream.result.tool_calls:
        print(json.dumps({"tool_call": {"id": call.id, "name": call.name, "arguments": call.arguments}}))
    return 0


def cmd_chat(args) -> int:
    generation_options(args)  # bad flags fail before the load
    # An interactive chat runs many turns: the engine's for_chat loads PagedAttention, whose
    # prefill stays flat as the history grows (Engine.load; -P ATTENTION_BACKEND=SDPA overrides it).
    engine = load_engine(args, for_chat=True)
    session = engine.chat(args.system, generation_options(args, engine.info))
    attention = engine.load_options.to_properties().get("ATTENTION_BACKEND")
    progress(f"ready{f' (attention: {attention})' if attention else ''}. /reset clears the history, "
             "/exit (or Ctrl-D) leaves, Ctrl-C stops an answer.")

    after_tools = dataclasses.replace(session.options, tool_choice="auto") if session.options.offers_tools else None

    def answer(text: str | None) -> None:
        # --tool-choice applies to your turns; the answer after tool results may call again or reply ("auto")
        stream = session.stream(text, after_tools if text is None else None)
        with stream:
            print_answer(stream, args.thinking)
        if stream.result.dropped_messages:
            progress(f"(the oldest {stream.result.dropped_messages} messages were dropped to fit the context)")
        if stream.result.tool_calls:  # --tools: you play the tools, then the model answers
            for call in stream.result.tool_calls:
                try:
                    output = input(f"[{call.name}({json.dumps(call.arguments)})] result> ")
                except EOFError:
                    return
                session.add_tool_result(call.id, output)
            answer(None)

    return chat_loop(answer, session.reset)


DIM, PLAIN = "\033[2m", "\033[0m"


class AnswerPrinter:
    """An answer printed as it comes; a thinking model's reasoning before it, dimmed ("show"; on
    stderr when stdout is not a terminal, so a pipe gets the answer alone) or not at all ("hide")."""

    def __init__(self, thinking: str = "show"):
        self._show = thinking == "show"
        self._tty = sys.stdout.isatty()
        self._thoughts = sys.stdout if self._tty else sys.stderr
        self._in_thought = False

    def reasoning(self, text: str) -> None:
        if self._show and text:
            self._thoughts.write((DIM if self._tty and not self._in_thought else "") + text)
            self._thoughts.flush()
            self._in_thought = True

    def answer(self, text: str) -> None:
        if text:
            self._end_thought("\n\n")
            print(text, end="", flush=True)

    def end(self) -> None:
        self._end_thought("\n")
        print()

    def _end_thought(self, gap: str) -> None:
        if self._in_thought:
            self._thoughts.write((PLAIN if self._tty else "") + gap)
            self._in_thought = False


def print_answer(stream, thinking: str = "show") -> None:
    """Print a TextStream's answer (and reasoning) as it comes (AnswerPrinter)."""
    printer = AnswerPrinter(thinking)
    for piece in stream.pieces():
        (printer.reasoning if piece.reasoning else printer.answer)(piece.text)
    printer.end()


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
            progress("history cleared.")
        elif text:
            try:
                answer(text)
            except KeyboardInterrupt:
                print("\n[stopped]")
            except EngineError as error:  # this turn failed (too long, a template refusal...): the chat goes on
                print()
                progress(f"ovchat: {error}")


def cmd_demo(args) -> int:
    generation_options(args)  # bad flags fail before the load
    engine = load_engine(args)
    options = generation_options(args, engine.info)
    print(f"[system] {SEED_SYSTEM_PROMPT}\n[user] {SEED_PROMPT}\n[assistant] ", end="", flush=True)
    session = engine.chat(SEED_SYSTEM_PROMPT, options)
    with session.stream(SEED_PROMPT) as stream:
        print_answer(stream, args.thinking)
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
    from ..engine.devices import available_devices, core
    for name in available_devices():
        print(f"{name}\t{core().get_property(name, 'FULL_DEVICE_NAME')}")
    print(f"(OpenVINO {ov.get_version()}; GPU and NPU appear only with an Intel device and its driver)")
    return 0


def cmd_info(args) -> int:
    from ..engine.model import MANIFEST, reexport_command, resolve, verify
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


def progress(message: str) -> None:
    """A line for the user beside the answer: on stderr, so stdout stays the answer."""
    print(message, file=sys.stderr, flush=True)
