"""The OpenAI wire format: requests parsed and validated, responses and SSE chunks built, and
the error shape `{"error": {"message", "type", "param", "code"}}` built here and nowhere else.

Parsing is strict. Every field of a request must be in the table of its endpoint: a field the
server does not support is refused with a 400 that names it, never silently ignored; a field
whose value changes nothing here (`"n": 1`, `"tools": []`) is accepted.
The checks are plain functions over that table rather than pydantic models: the server needs
a few dozen fields, and the table reads as the list of what is supported.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field

from ..engine.errors import OptionsError
from . import logprobs, tool_protocol
from .errors import (APIError, bad_request, model_not_found, not_found, queue_full, server_error,  # noqa: F401
                     too_large, unauthorized, unavailable, unsupported)  # the routes' and serving's errors, built in errors.py

ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool"}
MAX_STOP_STRINGS = 4  # as OpenAI's API


# ---- requests ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sampling:
    """What a request asks of generation, as given (None: not given, so the model's recommended
    decoding applies: serving.generation_options)."""
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None      # 1: nucleus sampling off
    top_k: int | None = None        # 0 (or -1, as vLLM): top-k off
    seed: int | None = None
    stop: tuple[str, ...] = ()
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    n: int = 1
    stream: bool = False
    include_usage: bool = False
    json_schema: str | None = None  # response_format json_schema: the answer validates against it
    json_object: bool = False       # response_format json_object: the answer is a JSON object
    ignore_eos: bool = False        # vLLM's and llama.cpp's extension: generate max_tokens whatever the model says
    tools: tuple = ()               # engine Tools offered (tool_protocol.py)
    tool_choice: str = "auto"       # "auto", "none", "required" or a tool's name
    parallel_tool_calls: bool = True
    logprobs: bool = False          # each token's logprob (chat: logprobs true; completions: logprobs N)
    top_logprobs: int = 0           # alternatives per token (server/logprobs.py says how many are known)
    thinking: bool | None = None    # reasoning_effort "none" / enable_thinking: False turns a thinking model's off
    template_kwargs: dict = field(default_factory=dict)  # chat_template_kwargs: more variables for the template


@dataclass(frozen=True)
class ChatRequest:
    model: str | None
    messages: list[dict]
    sampling: Sampling = field(default_factory=Sampling)


@dataclass(frozen=True)
class CompletionRequest:
    model: str | None
    prompt: str | list[int]
    sampling: Sampling = field(default_factory=Sampling)


def _int(low: int, high: int | None = None):
    def check(value, name):
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
            span = f"between {low} and {high}" if high is not None else f">= {low}"
            raise bad_request(f"'{name}' must be a whole number {span}, got {value!r}.", param=name)
        return value
    return check


def _number(low: float, high: float, low_open: bool = False):
    def check(value, name):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok or value > high or value < low or (low_open and value == low):
            span = f"in ({low}, {high}]" if low_open else f"in [{low}, {high}]"
            raise bad_request(f"'{name}' must be a number {span}, got {value!r}.", param=name)
        return float(value)
    return check


def _bool(value, name):
    if not isinstance(value, bool):
        raise bad_request(f"'{name}' must be true or false, got {value!r}.", param=name)
    return value


def _str(value, name):
    if not isinstance(value, str):
        raise bad_request(f"'{name}' must be a string, got {value!r}.", param=name)
    return value


def _stop(value, name):
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or len(stops) > MAX_STOP_STRINGS or not all(isinstance(s, str) and s for s in stops):
        raise bad_request(f"'{name}' must be a non-empty string or a list of up to {MAX_STOP_STRINGS} of them.", param=name)
    return tuple(stops)


def _stream_options(value, name):
    if not isinstance(value, dict):
        raise bad_request(f"'{name}' must be an object, got {value!r}.", param=name)
    for key in value:
        if key != "include_usage":
            raise unsupported(f"{name}.{key}")
    return _bool(value.get("include_usage", False), f"{name}.include_usage")


def _response_format(value, name):
    """OpenAI's response_format onto the engine's structured output: {"json_object": ..., "json_schema": ...}."""
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text" and set(value) == {"type"}:
        return {}
    if kind == "json_object" and set(value) == {"type"}:
        return {"json_object": True}
    if kind == "json_schema" and set(value) == {"type", "json_schema"}:
        spec = value["json_schema"]
        where = f"{name}.json_schema"
        if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
            raise bad_request(f"'{where}' must be an object with a 'schema' object.", param=where)
        for key in spec:
            if key not in ("name", "schema", "strict", "description"):
                raise unsupported(f"{where}.{key}")
        return {"json_schema": json.dumps(spec["schema"])}  # strict or not: the grammar always holds
    raise bad_request(f"'{name}' must be {{'type': 'text'}}, {{'type': 'json_object'}} or "
                      "{'type': 'json_schema', 'json_schema': {'name': ..., 'schema': {...}}}.", param=name)


REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high")


def _reasoning_effort(value, name):
    """OpenAI's reasoning_effort: "none" turns thinking off (where the template can); the others
    leave it on, at the model's own length (no thinking budget here)."""
    if value not in REASONING_EFFORTS:
        raise bad_request(f"'{name}' must be one of {', '.join(REASONING_EFFORTS)}, got {value!r}.", param=name)
    return value != "none"


def _template_kwargs(value, name):
    """vLLM's chat_template_kwargs: variables for the chat template (enable_thinking among them)."""
    if not isinstance(value, dict) or not all(isinstance(key, str) and key.isidentifier() for key in value):
        raise bad_request(f"'{name}' must be an object whose keys are template variable names.", param=name)
    if "enable_thinking" in value:
        _bool(value["enable_thinking"], f"{name}.enable_thinking")
    return value


def _only(*accepted, why: str = " (only its default value is)"):
    """A field accepted only with a value that changes nothing here."""
    def check(value, name):
        if value not in accepted:
            raise unsupported(name, why)
        return None
    return check


def _keep_alive(value, name: str):
    """ollama's keep_alive (a duration: seconds, "5m", 0, -1): checked here, applied by server/models.py."""
    from .model_settings import parse_duration
    try:
        parse_duration(value, f"'{name}'")
    except OptionsError as error:
        raise bad_request(str(error), param=name) from None
    return value


_SAMPLING_FIELDS = {
    "max_tokens": _int(1), "temperature": _number(0, 2), "top_p": _number(0, 1, low_open=True),
    "top_k": _int(-1), "seed": _int(0, 2**63 - 1), "stop": _stop,
    "presence_penalty": _number(-2, 2), "frequency_penalty": _number(-2, 2), "repetition_penalty": _number(0, 10, low_open=True),
    "n": _int(1), "stream": _bool, "stream_options": _stream_options,
    "user": _str,  # an end-user id for the caller's own records; nothing here depends on it
    "logit_bias": _only({}), "best_of": _only(1),
    "ignore_eos": _bool,  # as vLLM and llama-server take it: benchmarks ask for exactly max_tokens
    "keep_alive": _keep_alive,  # ollama's; a server of several models reads it
}
_CHAT_FIELDS = {
    **_SAMPLING_FIELDS, "model": _str, "messages": None, "max_completion_tokens": _int(1),
    "logprobs": _bool, "top_logprobs": _int(0, 20), "tools": tool_protocol.parse_tools,
    "tool_choice": tool_protocol.parse_tool_choice, "parallel_tool_calls": _bool, "response_format": _response_format, "store": _only(False),
    "reasoning_effort": _reasoning_effort, "chat_template_kwargs": _template_kwargs,
}
_COMPLETION_FIELDS = {
    **_SAMPLING_FIELDS, "model": _str, "prompt": None,
    "logprobs": _int(0, 5), "echo": _only(False), "suffix": _only(""),
}


def _fields(body: dict, table: dict) -> dict:
    values = {}
    for name, value in body.items():
        if name not in table:
            raise unsupported(name)
        if value is None or table[name] is None:  # null means "not given", as in OpenAI's API
            values[name] = value
            continue
        values[name] = table[name](value, name)
    return values


def _logprobs(values: dict, chat: bool) -> dict:
    """Chat: logprobs true, top_logprobs N (which needs logprobs); completions: logprobs N."""
    if not chat:
        given = values.get("logprobs")
        return {} if given is None else {"logprobs": True, "top_logprobs": given}
    top = values.get("top_logprobs")
    if top is not None and not values.get("logprobs"):
        raise bad_request("'top_logprobs' needs 'logprobs': true.", param="top_logprobs")
    return {"logprobs": bool(values.get("logprobs")), "top_logprobs": top or 0}


def _thinking(values: dict) -> dict:
    """reasoning_effort and chat_template_kwargs.enable_thinking: one switch, which must agree."""
    kwargs = dict(values.get("chat_template_kwargs") or {})
    effort, enable = values.get("reasoning_effort"), kwargs.pop("enable_thinking", None)
    if effort is not None and enable is not None and effort != enable:
        raise bad_request("'reasoning_effort' and 'chat_template_kwargs.enable_thinking' disagree; send one of them.",
                          param="reasoning_effort")
    return {"thinking": enable if enable is not None else effort, "template_kwargs": kwargs}


def _sampling(values: dict, max_n: int, chat: bool = True) -> Sampling:
    max_tokens, max_completion = values.get("max_tokens"), values.get("max_completion_tokens")
    if max_tokens is not None and max_completion is not None and max_tokens != max_completion:
        raise bad_request("'max_tokens' and 'max_completion_tokens' disagree; send one of them.", param="max_tokens")
    n = values.get("n") or 1
    if n > max_n:
        raise bad_request(f"'n' is {n}, but this server runs at most {max_n} sequences at once.", param="n")
    stream = bool(values.get("stream"))
    if values.get("stream_options") is not None and not stream:
        raise bad_request("'stream_options' needs 'stream': true.", param="stream_options")
    top_k = values.get("top_k")
    return Sampling(
        max_tokens=max_tokens if max_tokens is not None else max_completion,
        temperature=values.get("temperature"), top_p=values.get("top_p"),
        top_k=None if top_k is None else max(top_k, 0), seed=values.get("seed"), stop=values.get("stop") or (),
        presence_penalty=values.get("presence_penalty"), frequency_penalty=values.get("frequency_penalty"),
        repetition_penalty=values.get("repetition_penalty"), n=n, stream=stream,
        include_usage=bool(values.get("stream_options")), ignore_eos=bool(values.get("ignore_eos")),
        tools=values.get("tools") or (), parallel_tool_calls=values.get("parallel_tool_calls") is not False,
        tool_choice=tool_protocol.check_tool_choice(values.get("tool_choice"), values.get("tools") or ()),
        **(values.get("response_format") or {}), **_logprobs(values, chat), **_thinking(values),
    )


def _message(message, i: int) -> dict:
    where = f"messages[{i}]"
    if not isinstance(message, dict):
        raise bad_request(f"{where} must be an object with 'role' and 'content'.", param=where)
    role = message.get("role")
    for key in message:  # a tool result may name its function (templates such as Llama 3.1's show it)
        if key not in ("role", "content", "tool_calls", "tool_call_id") and not (key == "name" and role == "tool") \
                and not (key == "reasoning_content" and role == "assistant"):
            raise unsupported(f"{where}.{key}")
    if role not in ROLES:
        raise bad_request(f"{where}.role is {role!r}; use one of {', '.join(ROLES)}.", param=f"{where}.role")
    fields = tool_protocol.message_tool_fields(message, role, where)
    if "name" in message:
        fields["name"] = _str(message["name"], f"{where}.name")
    if message.get("reasoning_content") is not None:  # an earlier answer's thinking: templates leave it out of the history
        _str(message["reasoning_content"], f"{where}.reasoning_content")
    content = message.get("content")
    if content is None and fields.get("tool_calls"):
        content = ""  # an assistant turn that only calls tools
    return {"role": ROLES[role], "content": _content(content, f"{where}.content"), **fields}


def _content(content, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: text only, joined as one text
        texts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise unsupported(f"{where}[{j}]", " (only text parts are: {'type': 'text', 'text': ...})")
            texts.append(part["text"])
        return "\n".join(texts)
    raise bad_request(f"{where} must be a string or a list of text parts.", param=where)


def parse_chat(body: dict, max_n: int) -> ChatRequest:
    """A /v1/chat/completions body, checked; raises APIError(400) naming the first bad field."""
    values = _fields(body, _CHAT_FIELDS)
    messages = values.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty list of {'role', 'content'} objects.", param="messages")
    checked = [_message(message, i) for i, message in enumerate(messages)]
    if checked[-1]["role"] != "tool" and not checked[-1]["content"].strip():
        raise bad_request("The last message is empty; say something.", param=f"messages[{len(checked) - 1}].content")
    tool_protocol.check_history(checked)
    return ChatRequest(values.get("model"), checked, _sampling(values, max_n))


def parse_completion(body: dict, max_n: int) -> CompletionRequest:
    """A /v1/completions body, checked; the prompt is one string or one list of token ids."""
    values = _fields(body, _COMPLETION_FIELDS)
    prompt = values.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]  # a batch of one
    is_ids = isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0
                                                         for t in prompt)
    if not is_ids and not (isinstance(prompt, str) and prompt):
        raise bad_request("'prompt' must be a non-empty string or a list of token ids (one prompt per request).",
                          param="prompt")
    return CompletionRequest(values.get("model"), prompt, _sampling(values, max_n, chat=False))


def parse_json(body: bytes) -> dict:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise bad_request(f"The body is not valid JSON: {error}.", code="invalid_json") from None
    if not isinstance(data, dict):
        raise bad_request("The body must be a JSON object.", code="invalid_json")
    return data


# ---- responses ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Choice:
    index: int
    text: str
    finish_reason: str  # "stop", "length", "tool_calls", or "cancelled" (the client left or the server stopped)
    completion_tokens: int
    tool_calls: tuple = ()  # engine ToolCalls
    tokens: tuple = ()      # the engine's GeneratedTokens, when logprobs were asked for
    reasoning: str = ""     # a thinking model's reasoning, read apart from `text`
    reasoning_tokens: int = 0


class Reply:
    """The ids and stamps shared by every chunk of one response."""

    def __init__(self, kind: str, model: str, sampling: Sampling | None = None):
        self.chat = kind == "chat"
        self.logprobs = sampling is not None and sampling.logprobs
        self.top_logprobs = sampling.top_logprobs if sampling is not None else 0
        self.id = f"{'chatcmpl' if self.chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        self.model = model

    def _envelope(self, choices: list, usage: dict | None, chunk: bool) -> dict:
        kind = ("chat.completion.chunk" if chunk else "chat.completion") if self.chat else "text_completion"
        body = {"id": self.id, "object": kind, "created": self.created, "model": self.model, "choices": choices}
        if usage is not None:
            body["usage"] = usage
        return body

    def full(self, choices: list[Choice], prompt_tokens: int) -> dict:
        """The non-streaming response."""
        if self.chat:
            items = [{"index": c.index, "message": _assistant_message(c), "logprobs": self.logprobs_of(c.tokens),
                      "finish_reason": c.finish_reason} for c in choices]
        else:
            items = [{"index": c.index, "text": c.text, "logprobs": self.logprobs_of(c.tokens),
                      "finish_reason": c.finish_reason} for c in choices]
        return self._envelope(items, usage(prompt_tokens, sum(c.completion_tokens for c in choices),
                                           sum(c.reasoning_tokens for c in choices)), chunk=False)

    def logprobs_of(self, tokens: tuple, text_offset: int = 0) -> dict | None:
        """A choice's (or a chunk's) `logprobs`, None unless asked for."""
        if not self.logprobs:
            return None
        return logprobs.chat(tokens, self.top_logprobs) if self.chat else logprobs.completion(tokens, text_offset)

    def chunk(self, index: int, text: str | None = None, finish_reason: str | None = None, role: bool = False,
              usage: dict | None = None, tool_calls: list | None = None, tokens: tuple = (),
              text_offset: int = 0, reasoning: bool = False) -> bytes:
        """One SSE event: the role (chat's first delta), a text delta (`reasoning`: of the
        thinking, as delta.reasoning_content), tool-call deltas (with their tokens' logprobs when
        asked for), or the choice's end."""
        lp = self.logprobs_of(tokens, text_offset) if tokens else None
        if self.chat:
            delta = {"role": "assistant", "content": ""} if role else (
                {"reasoning_content" if reasoning else "content": text} if text else {})
            if tool_calls:
                delta["tool_calls"] = [tool_protocol.delta_json(d) for d in tool_calls]
            item = {"index": index, "delta": delta, "logprobs": lp, "finish_reason": finish_reason}
        else:
            item = {"index": index, "text": text or "", "logprobs": lp, "finish_reason": finish_reason}
        return sse(self._envelope([item], usage, chunk=True))

    def usage_chunk(self, usage: dict) -> bytes:
        """stream_options.include_usage: a last chunk with no choices and the request's usage."""
        return sse(self._envelope([], usage, chunk=True))


def _assistant_message(choice: Choice) -> dict:
    thought = {"reasoning_content": choice.reasoning} if choice.reasoning else {}
    if not choice.tool_calls:
        return {"role": "assistant", "content": choice.text, **thought}
    return {"role": "assistant", "content": choice.text or None, **thought,
            "tool_calls": [tool_protocol.call_json(call) for call in choice.tool_calls]}


def usage(prompt_tokens: int, completion_tokens: int, reasoning_tokens: int = 0) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "completion_tokens_details": {"reasoning_tokens": reasoning_tokens}}


def sse(data: dict) -> bytes:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


SSE_DONE = b"data: [DONE]\n\n"
