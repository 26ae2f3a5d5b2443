"""A client of `ovchat serve`, on the standard library only (http.client, json).

`ovchat generate --server URL` and `ovchat chat --server URL` (cli/remote.py) use it: the process
imports no OpenVINO and loads no model, so a shell command's first token costs a Python start-up
and one HTTP round trip. Answers stream over SSE, read line by line as the server sends them;
closing the connection (Ctrl-C) makes the server cancel the generation.
"""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass
from typing import Callable, Iterator
from urllib.parse import urlsplit

from ..engine.errors import EngineError

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


def stream_answer(client: Client, path: str, body: dict, on_text: Callable[[str], None],
                  on_reasoning: Callable[[str], None] | None = None) -> Answer:
    """Stream one answer (choice 0), calling on_text for every piece (on_reasoning for a thinking
    model's reasoning_content pieces); returns it whole."""
    pieces: list[str] = []
    finish, usage, first_at = None, {}, None
    start = time.perf_counter()
    for event in client.events(path, {**body, "stream_options": {"include_usage": True}}):
        usage = event.get("usage") or usage
        for choice in event.get("choices", []):
            text = choice.get("delta", {}).get("content") if "delta" in choice else choice.get("text")
            thought = choice.get("delta", {}).get("reasoning_content")
            if thought and on_reasoning is not None:
                on_reasoning(thought)
            if text:
                first_at = first_at or time.perf_counter()
                pieces.append(text)
                on_text(text)
            finish = choice.get("finish_reason") or finish
    now = time.perf_counter()
    return Answer("".join(pieces), finish, usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0),
                  ttft_ms=((first_at or now) - start) * 1000, generate_ms=(now - start) * 1000)
