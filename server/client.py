"""A client of `ovchat serve` for the CLI, on the standard library only (http.client, json).

`ovchat generate --server URL` and `ovchat chat --server URL` land here: the process imports no
OpenVINO and loads no model, so a shell command's first token costs a Python start-up and one
HTTP round trip. Answers stream over SSE, read line by line as the server sends them; closing
the connection (Ctrl-C) makes the server cancel the generation.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable, Iterator
from urllib.parse import urlsplit

from ..engine.errors import EngineError

DEFAULT_MAX_TOKENS = 256  # as `ovchat generate` without a server (GenerationOptions' default)
LOAD_FLAGS = {"device": "CPU", "hint": "LATENCY", "streams": 1, "cache_dir": None, "no_cache": False,
              "property": [], "no_warmup": False, "deterministic": False}


class ServerError(EngineError):
    """The server could not be reached, refused the request, or failed while answering."""


@dataclass(frozen=True)
class Answer:
    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    ttft_ms: float       # request sent -> first text, as this client saw it
    generate_ms: float   # request sent -> last event


class Client:
    def __init__(self, url: str, api_key: str | None = None, timeout_s: float = 600.0):
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ServerError(f"--server {url!r} is not an http(s) URL; use e.g. http://127.0.0.1:8000.")
        self.url = url
        self._scheme, self._host, self._port = parts.scheme, parts.hostname, parts.port
        self._prefix = parts.path.rstrip("/").removesuffix("/v1")
        self._api_key = api_key
        self._timeout_s = timeout_s

    def get(self, path: str) -> dict:
        with self._open("GET", path) as response:
            return json.loads(response.read())

    def events(self, path: str, body: dict) -> Iterator[dict]:
        """The SSE events of a streamed request, as dicts, until [DONE]. Leaving the loop early
        closes the connection, which cancels the generation on the server."""
        with self._open("POST", path, {**body, "stream": True}) as response:
            data: list[str] = []
            while line := response.readline():
                line = line.decode("utf-8").rstrip("\r\n")
                if line.startswith("data:"):
                    data.append(line[5:].lstrip(" "))
                    continue
                if line or not data:
                    continue  # comments, other fields, blank keep-alives
                payload, data = "\n".join(data), []
                if payload == "[DONE]":
                    return
                event = json.loads(payload)
                if "error" in event:
                    raise ServerError(f"the server failed while answering: {event['error'].get('message')}")
                yield event
        raise ServerError(f"{self.url} closed the stream before its end ([DONE]); see the server's log.")

    def _open(self, method: str, path: str, body: dict | None = None):
        kind = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        connection = kind(self._host, self._port, timeout=self._timeout_s)
        headers = {"Accept": "text/event-stream, application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        try:
            connection.request(method, self._prefix + path, json.dumps(body) if body is not None else None, headers)
            response = connection.getresponse()
        except OSError as error:
            connection.close()
            raise ServerError(f"cannot reach {self.url} ({error}). Start one with `ovchat serve`, "
                              "or check --server / $OVCHAT_SERVER.") from None
        if response.status >= 400:
            raise ServerError(_error_message(response))
        return _Closing(response, connection)


class _Closing:
    """The response, closed with its connection when the `with` block ends."""

    def __init__(self, response, connection):
        self.response, self.connection = response, connection

    def __enter__(self):
        return self.response

    def __exit__(self, *exc) -> None:
        self.connection.close()


def _error_message(response) -> str:
    raw = response.read()
    try:
        message = json.loads(raw)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = raw.decode("utf-8", "replace")[:200] or response.reason
    return f"the server answered {response.status}: {message}"


def stream_answer(client: Client, path: str, body: dict, on_text: Callable[[str], None]) -> Answer:
    """Stream one answer (choice 0), calling on_text for every piece; returns it whole."""
    pieces: list[str] = []
    finish, usage, first_at = None, {}, None
    start = time.perf_counter()
    for event in client.events(path, {**body, "stream_options": {"include_usage": True}}):
        usage = event.get("usage") or usage
        for choice in event.get("choices", []):
            text = choice.get("delta", {}).get("content") if "delta" in choice else choice.get("text")
            if text:
                first_at = first_at or time.perf_counter()
                pieces.append(text)
                on_text(text)
            finish = choice.get("finish_reason") or finish
    now = time.perf_counter()
    return Answer("".join(pieces), finish, usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0),
                  ttft_ms=((first_at or now) - start) * 1000, generate_ms=(now - start) * 1000)


def add_client_flags(p) -> None:
    """--server and --api-key on `ovchat generate` and `ovchat chat` (tools/cli.py adds them)."""
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
        body.update(temperature=0, repetition_penalty=1.0, frequency_penalty=0.0)
    if args.repetition_penalty is not None:
        body["repetition_penalty"] = args.repetition_penalty
    if args.stop:
        body["stop"] = list(args.stop)
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
    stream_answer(client, path, body, on_text=lambda text: print(text, end="", flush=True))
    print()
    return 0


def run_chat(args) -> int:
    """`ovchat chat --server URL`: the history lives here; every turn sends all of it."""
    client = _client(args)
    body = request_body(args)
    info = client.get("/v1/models")["data"][0]
    messages = [{"role": "system", "content": args.system}] if args.system else []
    _progress(f"connected to {args.server} ({info['id']}). /reset clears the history, /exit (or Ctrl-D) leaves, "
              "Ctrl-C stops an answer.")

    def answer(text: str) -> None:
        messages.append({"role": "user", "content": text})
        received: list[str] = []
        try:
            stream_answer(client, "/v1/chat/completions", {**body, "messages": messages},
                          on_text=lambda piece: (received.append(piece), print(piece, end="", flush=True)))
            print()
        finally:  # stopped or failed (the connection closes: the server cancels the generation)
            if received:
                messages.append({"role": "assistant", "content": "".join(received)})
            else:
                messages.pop()

    def reset() -> None:
        del messages[1 if args.system else 0:]

    from ..engine.cli import chat_loop  # stdlib and errors only: still no OpenVINO here
    return chat_loop(answer, reset)


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
