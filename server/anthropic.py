"""The Anthropic Messages API's answers (`POST /v1/messages`): a Message, or its stream of events,
and errors in Anthropic's shape. (anthropic_request.py reads the requests.)

The answer leaves as content blocks: a thinking model's `thinking` block first (its signature
empty: nothing here checks one), a `text` block, and a `tool_use` block per call. Streamed,
in Anthropic's order: message_start, ping, then per block content_block_start,
content_block_delta... (thinking_delta, text_delta, or input_json_delta for a call's input), content_block_stop;
last message_delta (stop_reason, usage) and message_stop. A generation that fails mid-stream
ends with an `error` event. Finish reasons: stop -> end_turn, length -> max_tokens,
tool_calls -> tool_use; an answer the server cut (the client left, a shutdown) has none.
The engine does not say whether a stop string or the end of the model's turn ended an answer
(genai drops the stop string), so `stop_sequence` is not reported: such answers say end_turn.
"""

from __future__ import annotations

import json
import uuid

from ..engine.events import End, Text, ToolCallDelta
from .anthropic_request import MessagesRequest, parse_messages, thinking_fields  # noqa: F401  (the route's imports)
from .protocol import APIError

# The OpenAI-shaped statuses the server raises, as Anthropic names them (its status codes are the same).
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 405: "invalid_request_error", 413: "request_too_large", 415: "invalid_request_error",
                429: "rate_limit_error", 503: "overloaded_error"}
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def error_body(error: APIError) -> dict:
    """{"type": "error", "error": {"type", "message"}}, the type from the status (500: api_error)."""
    return {"type": "error", "error": {"type": _ERROR_TYPES.get(error.status, "api_error"), "message": error.message}}


def stop_reason(finish_reason: str) -> str | None:
    return _STOP_REASONS.get(finish_reason)  # "cancelled": the answer did not finish


def usage(input_tokens: int, output_tokens: int) -> dict:
    return {"input_tokens": input_tokens, "output_tokens": output_tokens,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}


class MessageBuilder:
    """One answer's id, its Message object, and its stream of events."""

    def __init__(self, model: str, request: MessagesRequest):
        self.id = f"msg_{uuid.uuid4().hex[:24]}"
        self.model = model
        self.request = request

    def message(self, content: list, reason: str | None, input_tokens: int, output_tokens: int) -> dict:
        return {"id": self.id, "type": "message", "role": "assistant", "model": self.model, "content": content,
                "stop_reason": reason, "stop_sequence": None, "usage": usage(input_tokens, output_tokens)}

    def full(self, text: str, calls, finish_reason: str, input_tokens: int, output_tokens: int,
             reasoning: str = "") -> dict:
        """The non-streamed Message: its thinking, a text block (unless the answer is calls only), then its calls."""
        content = [thinking_block(reasoning)] if reasoning and self.request.show_thinking else []
        content += [] if calls and not text else [{"type": "text", "text": text}]
        content += [tool_use(call.id, call.name, call.arguments) for call in calls]
        return self.message(content, stop_reason(finish_reason), input_tokens, output_tokens)


def thinking_block(text: str) -> dict:
    return {"type": "thinking", "thinking": text, "signature": ""}


def tool_use(call_id: str, name: str, arguments: dict) -> dict:
    return {"type": "tool_use", "id": call_id, "name": name, "input": arguments}


def event(kind: str, **fields) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **fields}, ensure_ascii=False)}\n\n".encode()


class EventWriter:
    """The content blocks of a streamed answer as they grow, and the events that say so."""

    def __init__(self, builder: MessageBuilder):
        self.builder = builder
        self._blocks = 0                  # blocks started so far
        self._open: tuple | None = None   # the block being written: ("text",) or ("call", call index)

    def start(self, input_tokens: int) -> list[bytes]:
        return [event("message_start", message=self.builder.message([], None, input_tokens, 0)), event("ping")]

    def text(self, delta: str) -> list[bytes]:
        events = []
        if self._open != ("text",):
            events += self._close()
            events += self._begin(("text",), {"type": "text", "text": ""})
        return events + [self._delta({"type": "text_delta", "text": delta})]

    def thinking(self, delta: str) -> list[bytes]:
        events = []
        if self._open != ("thinking",):
            events += self._close()
            events += self._begin(("thinking",), thinking_block(""))
        return events + [self._delta({"type": "thinking_delta", "thinking": delta})]

    def call(self, index: int, call_id: str | None, name: str | None, arguments: str) -> list[bytes]:
        """A call's first delta (its id and name) or a fragment of its input's JSON."""
        events = []
        if self._open != ("call", index):
            events += self._close()
            events += self._begin(("call", index), tool_use(call_id, name, {}))
        if arguments:
            events.append(self._delta({"type": "input_json_delta", "partial_json": arguments}))
        return events

    def finish(self, finish_reason: str, output_tokens: int) -> list[bytes]:
        return self._close() + [
            event("message_delta", delta={"stop_reason": stop_reason(finish_reason), "stop_sequence": None},
                  usage={"output_tokens": output_tokens}),
            event("message_stop")]

    def _begin(self, block: tuple, content_block: dict) -> list[bytes]:
        self._open = block
        self._blocks += 1
        return [event("content_block_start", index=self._blocks - 1, content_block=content_block)]

    def _delta(self, delta: dict) -> bytes:
        return event("content_block_delta", index=self._blocks - 1, delta=delta)

    def _close(self) -> list[bytes]:
        if self._open is None:
            return []
        self._open = None
        return [event("content_block_stop", index=self._blocks - 1)]


async def stream(builder: MessageBuilder, run):
    """The events of one run (see the module's docstring): the engine's Text and ToolCallDelta
    events as text and tool_use blocks."""
    writer = EventWriter(builder)
    for sse_event in writer.start(run.prompt_tokens):
        yield sse_event
    try:
        async for _, item in run.events():
            if isinstance(item, Text) and item.reasoning:
                events = writer.thinking(item.text) if item.text and builder.request.show_thinking else []
            elif isinstance(item, Text):
                events = writer.text(item.text) if item.text else []
            elif isinstance(item, ToolCallDelta):
                events = writer.call(item.index, item.id, item.name, item.arguments)
            elif isinstance(item, End):
                events = writer.finish(item.result.finish_reason, item.result.output_tokens)
            for sse_event in events:
                yield sse_event
    except APIError as error:
        yield event("error", error=error_body(error)["error"])
