"""Helpers for the server's tests: an in-process `ovchat serve` app on uvicorn (127.0.0.1, an
ephemeral port, stopped on exit), a fake engine that streams canned pieces, and small HTTP
helpers on the standard library."""

from __future__ import annotations

import http.client
import json
import os
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from ovchat.engine.errors import PromptError
from ovchat.engine.events import Accepted, Failed
from ovchat.engine.reasoning import MAY_OPEN, Splitter, Thinking
from ovchat.engine.results import GeneratedToken, GenerationResult, Metrics
from ovchat.engine.stream import Feed, Handle


@contextmanager
def running_server(load_engine, startup_timeout_s: float = 180, wait_ready: bool = True, **config):
    """Serve create_app(load_engine, ServerSettings(**config)) on a thread; yield (url, app).
    Stored responses go to a file of their own, removed after, unless `responses_db` names one."""
    import uvicorn
    from ovchat.server.app import create_app
    from ovchat.server.settings import ServerSettings

    scratch = tempfile.TemporaryDirectory(prefix="ovchat-responses-")
    config.setdefault("responses_db", os.path.join(scratch.name, "responses.sqlite"))
    app = create_app(load_engine, ServerSettings(**config))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    url = "http://127.0.0.1:%d" % server.servers[0].sockets[0].getsockname()[1]
    try:
        if wait_ready:
            while request(url, "GET", "/health")[0] != 200:
                assert time.monotonic() < deadline, "the model did not load in time"
                time.sleep(0.1)
        yield url, app
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        scratch.cleanup()


def request(url: str, method: str, path: str, body=None, headers: dict | None = None, timeout_s: float = 60):
    """(status, parsed JSON or text, headers) of one request; `body` may be a dict or raw bytes."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout_s)
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    try:
        connection.request(method, path, data, {"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        raw = response.read()
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw.decode()
        return response.status, parsed, response.headers  # case-insensitive
    finally:
        connection.close()


def metric(url: str, name: str, headers: dict | None = None) -> float:
    """The value of one sample line of /metrics, e.g. 'ovchat_requests_running'."""
    text = request(url, "GET", "/metrics", headers=headers)[1]
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def wait_for(condition, timeout_s: float = 30, every_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every_s)
    return condition()


THOUGHT = ("<think>", "\nThe user", " wants a greeting.", "\n</th", "ink>\n\n")  # a thinking, its markers cut across tokens


@dataclass
class FakeEngine:
    """Streams `pieces` (one per token, up to max_new_tokens, flushed after each) on a thread per
    request, as the engine's runners do; holds every generation at its first token while `gate` is clear."""
    pieces: tuple = ("Hello", ",", " world", ".")
    context_length: int = 64
    gate: threading.Event | None = None
    mode: str = "batch"
    stopped: str | None = None
    generation_defaults: dict = field(default_factory=dict)  # the model's recommended decoding
    honours_cancel_at_gate: bool = True  # False: a held generation ignores cancels (a long prefill) until the gate opens
    thinks: bool = False  # a thinking model: its reasoning read apart as the engine does (unless turned off or inline)

    def __post_init__(self):
        self.info = SimpleNamespace(path=Path("/models/fake-model"), context_length=self.context_length,
                                    architecture="fake", generation_defaults=self.generation_defaults)
        self.active = 0
        self.cancelled = 0
        self.seen_options = []
        self.seen_prompts = []  # the prompts (a chat's messages) the engine was given

    def start(self, prompt, options, sink, handle=None):
        handle = handle or Handle()
        text = prompt if isinstance(prompt, str) else json.dumps(prompt)
        if len(text.split()) > self.context_length:
            sink.put(Failed(PromptError(f"The prompt is {len(text.split())} tokens but the model's context holds "
                                        f"{self.context_length}; shorten it (or start a new chat).")))
            return handle
        self.seen_options.append(options)
        self.seen_prompts.append(prompt)
        # With tools: answers with a call of the first tool offered, in the Hermes format.
        accepted = Accepted(len(text.split()), tool_format="hermes" if options.offers_tools else None)
        thinking = self.thinks and options.thinking is not False
        splitter = Splitter(Thinking(), MAY_OPEN) if thinking and options.separate_reasoning else None
        feed = Feed(sink, handle, accepted, tuple(t.name for t in options.tools), splitter)
        feed.accept()
        threading.Thread(target=self._run, args=(feed, options, thinking), daemon=True).start()
        return handle

    def _run(self, feed: Feed, options, thinking: bool = False) -> None:
        self.active += 1
        pieces = THOUGHT + tuple(self.pieces) if thinking else self.pieces
        if options.offers_tools:
            pieces = ("<tool_call>", '{"name": "%s", ' % options.tools[0].name, '"arguments": {"city": ', '"Paris"}}',
                      "</tool_call>")
        try:
            count = min(options.max_new_tokens, len(pieces))
            # With logprobs, piece i is token i with logprob -(i + 1) / 10.
            tokens = tuple(GeneratedToken(i, piece, -(i + 1) / 10) for i, piece in enumerate(pieces)) \
                if options.logprobs else ()
            for i in range(count):
                while self.gate is not None and not self.gate.wait(0.01) and \
                        not (feed.cancelled and self.honours_cancel_at_gate):
                    pass
                if feed.cancelled:
                    self.cancelled += 1
                    return feed.end(None)
                feed.piece(pieces[i], i + 1, tokens[i:i + 1])
                feed.flush()  # one token per "step"
                time.sleep(0.002)
            reason = "length" if count < len(pieces) else "stop"
            result = GenerationResult("".join(pieces[:count]), 3, count, reason,
                                      Metrics(ttft_ms=1.0, tpot_ms=2.0, tokens_per_s=500.0, generate_ms=9.0),
                                      tokens=tokens[:count])
            feed.end(result)
        finally:
            self.active -= 1

    def stats(self):
        return SimpleNamespace(mode=self.mode, running=self.active, waiting=0, kv_cache_usage=0.25)

    def close(self) -> None:
        pass


def children_of(pid: int) -> set[int]:
    """The live (not zombie) child processes of `pid`, read from /proc."""
    found = set()
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if entry.isdigit() and int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry))
    return found
