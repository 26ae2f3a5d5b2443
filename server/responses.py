"""The Responses API's answers (`POST /v1/responses`): a Response object, or its stream of events.

The answer leaves as output items: a thinking model's `reasoning` item first (its thinking as one
`reasoning_text` content part, as vLLM gives an open model's), a `message` with one `output_text`
part, and a `function_call` item per call. Streamed, as OpenAI sends them (each event with its
`sequence_number`): response.created, response.in_progress; per item output_item.added, then for
a reasoning item content_part.added, reasoning_text.delta..., reasoning_text.done,
content_part.done, for a message content_part.added, output_text.delta..., output_text.done, content_part.done, and for a call
function_call_arguments.delta..., function_call_arguments.done; output_item.done; last
response.completed, or response.incomplete when max_output_tokens cut the answer.
A finished Response (completed or incomplete) goes to the builder's `keep` when the request
stores it (responses_stored.py). (responses_request.py reads the requests.)
"""

from __future__ import annotations

import json
import time
import uuid

from ..engine.events import Text, ToolCallDelta
from . import logprobs
from .protocol import APIError
from .responses_request import ResponsesRequest, parse_responses  # noqa: F401  (the route's one import)


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


class ResponseBuilder:
    """One response's ids, its Response object, and its stream of events."""

    def __init__(self, model: str, request: ResponsesRequest, keep=None):
        self.id = _id("resp")
        self.keep = keep  # awaited with a finished Response object to store it (responses_stored.keeper), or None
        self.created_at = int(time.time())
        self.model = model
        self.request = request
        sampling = request.chat.sampling
        self.top_logprobs = sampling.top_logprobs if sampling.logprobs else None
        self._sequence = 0

    def response(self, status: str, output: list, usage: dict | None = None, reason: str | None = None) -> dict:
        echo = self.request.echo
        return {
            "id": self.id, "object": "response", "created_at": self.created_at, "status": status,
            "completed_at": int(time.time()) if status == "completed" else None,
            "error": None, "incomplete_details": {"reason": reason} if reason else None,
            "instructions": echo.get("instructions"), "max_output_tokens": echo.get("max_output_tokens"),
            "model": self.model, "output": output,
            "parallel_tool_calls": echo.get("parallel_tool_calls", True) is not False,
            "previous_response_id": self.request.previous_response_id, "store": self.request.store, "temperature": echo.get("temperature"),
            "text": echo.get("text") or {"format": {"type": "text"}}, "tool_choice": echo.get("tool_choice") or "auto",
            "tools": echo.get("tools") or [], "top_p": echo.get("top_p"), "truncation": "disabled",
            "metadata": echo.get("metadata") or {}, "user": echo.get("user"), "usage": usage,
        }

    def message(self, item_id: str, text: str, tokens: tuple, status: str) -> dict:
        return {"type": "message", "id": item_id, "role": "assistant", "status": status,
                "content": [self.text_part(text, tokens)] if status != "in_progress" else []}

    def text_part(self, text: str, tokens: tuple) -> dict:
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": self.logprobs_of(tokens)}

    def logprobs_of(self, tokens: tuple) -> list:
        return logprobs.responses(tokens, self.top_logprobs) if self.top_logprobs is not None else []

    @staticmethod
    def reasoning(item_id: str, text: str, status: str) -> dict:
        return {"type": "reasoning", "id": item_id, "summary": [], "status": status,
                "content": [{"type": "reasoning_text", "text": text}] if status != "in_progress" else []}

    @staticmethod
    def function_call(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict:
        return {"type": "function_call", "id": item_id, "call_id": call_id, "name": name, "arguments": arguments,
                "status": status}

    def full(self, text: str, calls: list, tokens: tuple, finish_reason: str, prompt_tokens: int,
             completion_tokens: int, reasoning: str = "", reasoning_tokens: int = 0) -> dict:
        """The non-streamed Response: its reasoning, a message (unless the answer is calls only), then its calls."""
        status, reason = _status(finish_reason)
        output = [self.reasoning(_id("rs"), reasoning, "completed")] if reasoning else []
        output += [] if calls and not text else [self.message(_id("msg"), text, tokens, status)]
        output += [self.function_call(_id("fc"), call.id, call.name, json.dumps(call.arguments, ensure_ascii=False),
                                      "completed") for call in calls]
        return self.response(status, output, usage(prompt_tokens, completion_tokens, reasoning_tokens), reason)

    async def finished(self, response: dict) -> dict:
        """The finished Response, once kept (when the request stores it): a client that continues
        from it as soon as it has it finds it stored."""
        if self.keep is not None and response["status"] in ("completed", "incomplete"):
            await self.keep(response)
        return response

    def event(self, kind: str, **fields) -> bytes:
        data = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def _status(finish_reason: str) -> tuple[str, str | None]:
    if finish_reason == "length":
        return "incomplete", "max_output_tokens"
    if finish_reason == "cancelled":
        return "cancelled", None
    return "completed", None


def usage(prompt_tokens: int, completion_tokens: int, reasoning_tokens: int = 0) -> dict:
    return {"input_tokens": prompt_tokens, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": completion_tokens, "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
            "total_tokens": prompt_tokens + completion_tokens}


class EventWriter:
    """The output items of a streamed response as they grow, and the events that say so."""

    def __init__(self, builder: ResponseBuilder):
        self.builder = builder
        self.items: list[dict] = []
        self._message: dict | None = None       # the message being written: {"id", "text", "tokens"}
        self._thought: dict | None = None       # the reasoning item being written: {"id", "text", "index"}
        self._calls: dict[int, dict] = {}        # call index -> its item being written
        self.final: dict | None = None           # the finished Response object

    def start(self) -> list[bytes]:
        snapshot = self.builder.response("in_progress", [])
        return [self.builder.event("response.created", response=snapshot),
                self.builder.event("response.in_progress", response=snapshot)]

    def reasoning(self, delta: str) -> list[bytes]:
        events = []
        if self._thought is None:
            item = self.builder.reasoning(_id("rs"), "", "in_progress")
            self._thought = {"id": item["id"], "text": "", "index": len(self.items)}
            self.items.append(item)
            events += [self.builder.event("response.output_item.added", output_index=self._thought["index"], item=item),
                       self.builder.event("response.content_part.added", item_id=item["id"],
                                          output_index=self._thought["index"], content_index=0,
                                          part={"type": "reasoning_text", "text": ""})]
        self._thought["text"] += delta
        return events + [self.builder.event("response.reasoning_text.delta", item_id=self._thought["id"],
                                            output_index=self._thought["index"], content_index=0, delta=delta)]

    def _close_reasoning(self) -> list[bytes]:
        thought, self._thought = self._thought, None
        if thought is None:
            return []
        done = self.builder.reasoning(thought["id"], thought["text"], "completed")
        self.items[thought["index"]] = done
        index = thought["index"]
        return [self.builder.event("response.reasoning_text.done", item_id=done["id"], output_index=index,
                                   content_index=0, text=thought["text"]),
                self.builder.event("response.content_part.done", item_id=done["id"], output_index=index,
                                   content_index=0, part=done["content"][0]),
                self.builder.event("response.output_item.done", output_index=index, item=done)]

    def text(self, delta: str, tokens: tuple) -> list[bytes]:
        events = self._close_reasoning()
        events += [] if self._message is not None else self._open_message()
        message = self._message
        message["text"] += delta
        message["tokens"] += tokens
        events.append(self.builder.event("response.output_text.delta", item_id=message["id"],
                                         output_index=message["index"], content_index=0, delta=delta,
                                         logprobs=self.builder.logprobs_of(tokens)))
        return events

    def call(self, index: int, call_id: str | None, name: str | None, arguments: str) -> list[bytes]:
        """A call's first delta (its id and name) or a fragment of its arguments."""
        events = self._close_reasoning()
        if index not in self._calls:
            events += self._close_message("completed")
            item = self.builder.function_call(_id("fc"), call_id, name, "", "in_progress")
            self._calls[index] = {"item": item, "index": len(self.items)}
            self.items.append(item)
            events.append(self.builder.event("response.output_item.added", output_index=len(self.items) - 1, item=item))
        if arguments:
            call = self._calls[index]
            call["item"]["arguments"] += arguments
            events.append(self.builder.event("response.function_call_arguments.delta", item_id=call["item"]["id"],
                                             output_index=call["index"], delta=arguments))
        return events

    def finish(self, finish_reason: str, prompt_tokens: int, completion_tokens: int, tokens: tuple = (),
               reasoning_tokens: int = 0) -> list[bytes]:
        """The items' done events and the last event; `tokens`: logprob tokens with no text of
        their own (an end-of-turn token), kept in the message still open."""
        status, reason = _status(finish_reason)
        events = self._close_reasoning()
        if not self._message and not self._calls:  # no text, no call: still one (empty) message, as a non-streamed answer has
            events += self._open_message()
        if self._message is not None:
            self._message["tokens"] += tokens
        events += self._close_message(status)
        for call in self._calls.values():
            item = dict(call["item"], status="completed")
            self.items[call["index"]] = item
            events += [self.builder.event("response.function_call_arguments.done", item_id=item["id"],
                                          output_index=call["index"], arguments=item["arguments"]),
                       self.builder.event("response.output_item.done", output_index=call["index"], item=item)]
        final = self.final = self.builder.response(status, self.items, usage(prompt_tokens, completion_tokens,
                                                                             reasoning_tokens), reason)
        kind = "response.completed" if status == "completed" else f"response.{status}"
        return events + [self.builder.event(kind, response=final)]

    def error(self, error: APIError) -> list[bytes]:
        return [self.builder.event("error", code=error.code, message=error.message, param=error.param)]

    def _open_message(self) -> list[bytes]:
        item = self.builder.message(_id("msg"), "", (), "in_progress")
        self._message = {"id": item["id"], "text": "", "tokens": (), "index": len(self.items)}
        self.items.append(item)
        index = self._message["index"]
        return [self.builder.event("response.output_item.added", output_index=index, item=item),
                self.builder.event("response.content_part.added", item_id=item["id"], output_index=index,
                                   content_index=0, part=self.builder.text_part("", ()))]

    def _close_message(self, status: str) -> list[bytes]:
        message, self._message = self._message, None
        if message is None:
            return []
        index = message["index"]
        done = self.builder.message(message["id"], message["text"], message["tokens"], status)
        self.items[index] = done
        part = done["content"][0]
        return [self.builder.event("response.output_text.done", item_id=done["id"], output_index=index,
                                   content_index=0, text=part["text"], logprobs=part["logprobs"]),
                self.builder.event("response.content_part.done", item_id=done["id"], output_index=index,
                                   content_index=0, part=part),
                self.builder.event("response.output_item.done", output_index=index, item=done)]


async def stream(builder: ResponseBuilder, run):
    """The events of one run (see the module's docstring): the engine's Text and ToolCallDelta
    events as output text and function-call items."""
    writer = EventWriter(builder)
    pending: tuple = ()  # logprob tokens that precede the next text
    for event in writer.start():
        yield event
    try:
        async for _, event in run.events():
            if isinstance(event, Text) and event.reasoning:
                events = writer.reasoning(event.text) if event.text else []
            elif isinstance(event, Text):
                pending += event.tokens
                if event.text:
                    events, pending = writer.text(event.text, pending), ()
                else:
                    events = []
            elif isinstance(event, ToolCallDelta):
                events = writer.call(event.index, event.id, event.name, event.arguments)
            else:  # End
                result = event.result
                events = writer.finish(result.finish_reason, result.input_tokens, result.output_tokens, pending,
                                       result.reasoning_tokens)
                await builder.finished(writer.final)  # stored before the client reads the last event
            for sse_event in events:
                yield sse_event
    except APIError as error:
        for event in writer.error(error):
            yield event
