"""`ovchat generate --server URL` and `ovchat chat --server URL`: the same commands, answered by a
running `ovchat serve` through server/client.py.

This path imports no OpenVINO and loads no model (a shell command's first token costs a Python
start-up and one HTTP round trip). The generation flags mean what they mean without a server: a
decoding flag left out is left out of the request, so the server applies the model's
recommended decoding. Flags that choose how a model is loaded are refused, not ignored.
"""

from __future__ import annotations

import json
import os

from ..server.client import Client, ServerError, stream_answer
from .runtime import AnswerPrinter, chat_loop, progress

DEFAULT_MAX_TOKENS = 256  # as `ovchat generate` without a server (GenerationOptions' default)
LOAD_FLAGS = {"device": "CPU", "hint": "LATENCY", "streams": 1, "cache_dir": None, "no_cache": False,
              "property": [], "no_warmup": False, "deterministic": False}


def add_client_flags(p) -> None:
    """--server and --api-key on `ovchat generate` and `ovchat chat` (cli/main.py adds them)."""
    g = p.add_argument_group("client of a running `ovchat serve` (no model is loaded here)")
    g.add_argument("--server", metavar="URL", default=os.environ.get("OVCHAT_SERVER") or None,
                   help="send the request to this server, e.g. http://127.0.0.1:8000 (default: $OVCHAT_SERVER)")
    g.add_argument("--api-key", default=os.environ.get("OVCHAT_API_KEY") or None,
                   help="the server's API key (default: $OVCHAT_API_KEY)")


def request_body(args) -> dict:
    """The generation flags of `ovchat generate/chat` as OpenAI request fields, with the same
    meaning as without a server: a decoding flag left out is left out of the request, so the
    server applies the model's recommended decoding; --greedy asks for plain greedy decoding
    (no penalties), --sample for sampling."""
    body = {"max_tokens": args.max_new_tokens or DEFAULT_MAX_TOKENS}
    if args.model:
        body["model"] = args.model
    if args.sample:
        body["temperature"] = args.temperature if args.temperature is not None else 1.0
        for flag, field in (("top_p", "top_p"), ("top_k", "top_k"), ("seed", "seed")):
            if getattr(args, flag) is not None:
                body[field] = getattr(args, flag)
    elif getattr(args, "greedy", False):
        body.update(temperature=0, repetition_penalty=1.0, frequency_penalty=0.0, presence_penalty=0.0)
    if args.repetition_penalty is not None:
        body["repetition_penalty"] = args.repetition_penalty
    if args.stop:
        body["stop"] = list(args.stop)
    if getattr(args, "thinking", "show") == "off":
        body["reasoning_effort"] = "none"
    return body


def _client(args) -> Client:
    changed = [name for name, default in LOAD_FLAGS.items() if getattr(args, name, default) != default]
    if changed:
        flags = ", ".join("--" + name.replace("_", "-") for name in changed)
        raise ServerError(f"{flags} choose how a model is loaded; with --server, the server has loaded its own. "
                          "Drop them (or drop --server).")
    if getattr(args, "tools", None):
        raise ServerError("--tools runs with a local model; a server takes tools through its API "
                          "(the openai client's tools=...). Drop --tools (or drop --server).")
    return Client(args.server, args.api_key)


def run_generate(args) -> int:
    """`ovchat generate --server URL PROMPT`."""
    client = _client(args)
    body = request_body(args)
    if args.raw:
        path, body = "/v1/completions", {**body, "prompt": args.prompt}
    else:
        messages = ([{"role": "system", "content": args.system}] if args.system else []) + \
                   [{"role": "user", "content": args.prompt}]
        path, body = "/v1/chat/completions", {**body, "messages": messages}
    if args.json:
        answer = stream_answer(client, path, body, on_text=lambda text: None)
        decode_ms = answer.generate_ms - answer.ttft_ms
        tpot = decode_ms / (answer.completion_tokens - 1) if answer.completion_tokens > 1 else 0.0
        print(json.dumps({"text": answer.text, "input_tokens": answer.prompt_tokens,
                          "output_tokens": answer.completion_tokens, "finish_reason": answer.finish_reason,
                          "metrics": {"ttft_ms": answer.ttft_ms, "tpot_ms": tpot,
                                      "tokens_per_s": 1000 / tpot if tpot else 0.0, "generate_ms": answer.generate_ms},
                          "server": args.server}))
        return 0
    printer = AnswerPrinter(args.thinking)
    stream_answer(client, path, body, on_text=printer.answer, on_reasoning=printer.reasoning)
    printer.end()
    return 0


def run_chat(args) -> int:
    """`ovchat chat --server URL`: the history lives here; every turn sends all of it."""
    client = _client(args)
    body = request_body(args)
    info = client.get("/v1/models")["data"][0]
    messages = [{"role": "system", "content": args.system}] if args.system else []
    progress(f"connected to {args.server} ({info['id']}). /reset clears the history, /exit (or Ctrl-D) leaves, "
             "Ctrl-C stops an answer.")

    def answer(text: str) -> None:
        messages.append({"role": "user", "content": text})
        received: list[str] = []
        printer = AnswerPrinter(args.thinking)
        try:
            stream_answer(client, "/v1/chat/completions", {**body, "messages": messages},
                          on_text=lambda piece: (received.append(piece), printer.answer(piece)),
                          on_reasoning=printer.reasoning)
            printer.end()
        finally:  # stopped or failed (the connection closes: the server cancels the generation)
            if received:
                messages.append({"role": "assistant", "content": "".join(received)})
            else:
                messages.pop()

    def reset() -> None:
        del messages[1 if args.system else 0:]

    return chat_loop(answer, reset)


COMMANDS = {"generate": run_generate, "chat": run_chat}  # the subcommands --server turns into a client's
