"""The Responses API's requests (`POST /v1/responses`), rewritten as chat-completions requests.

A body is rewritten as a chat-completions body and checked by protocol.parse_chat, so both
endpoints share one set of rules: `input` (a string, or message, function_call and
function_call_output items) and `instructions` become messages, function `tools` and
`tool_choice` become chat tools, `text.format` becomes `response_format`, `max_output_tokens`
becomes `max_tokens`, `include: ["message.output_text.logprobs"]` becomes `logprobs`. A refusal
names the Responses field (`input[2].content`, not `messages[3].content`). `store` and
`previous_response_id` are read here; the earlier turns a previous response carries come in as
`history` (server/responses_stored.py looks them up), before the request's `input`, after its
`instructions` (which are not carried over, as OpenAI's). `conversation` is a 400.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

from .protocol import APIError, ChatRequest, bad_request, parse_chat, unsupported

_INPUT_ROLES = ("user", "system", "developer", "assistant")
_TEXT_PARTS = ("input_text", "output_text", "text")
_LOGPROBS_INCLUDE = "message.output_text.logprobs"
_NO_CONVERSATIONS = (" (the Conversations API is not served: continue a stored response with "
                     "'previous_response_id', or send the whole conversation in 'input')")
_ITEM_IDS = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "reasoning": "rs"}
# Responses fields that chat completions takes under the same name and meaning.
_SAME_IN_CHAT = ("model", "temperature", "top_p", "stream", "user", "parallel_tool_calls", "top_logprobs",
                 "keep_alive")
# Fields that change nothing here: an end-user id, a cache hint (prefix caching is on anyway).
_NO_OPS = ("safety_identifier", "prompt_cache_key")


@dataclass(frozen=True)
class ResponsesRequest:
    chat: ChatRequest               # the same request, as chat completions reads it
    echo: dict = field(default_factory=dict)  # request fields the Response object repeats back
    store: bool = False             # keep the response (server/responses_stored.py)
    previous_response_id: str | None = None
    input_items: list = field(default_factory=list)  # the model's input as items: history, then `input`


def read_store(body: dict, default: bool) -> tuple[bool, str | None]:
    """The request's `store` (`default` when absent) and `previous_response_id`, checked."""
    store, previous = body.get("store"), body.get("previous_response_id")
    if store is not None and not isinstance(store, bool):
        raise bad_request(f"'store' must be true or false, got {store!r}.", param="store")
    if previous is not None and (not isinstance(previous, str) or not previous):
        raise bad_request(f"'previous_response_id' must be a response's id (a string), got {previous!r}.",
                          param="previous_response_id")
    return default if store is None else store, previous


def parse_responses(body: dict, max_n: int, history: list = (), store_default: bool = False) -> ResponsesRequest:
    """A /v1/responses body, checked; raises APIError(400) naming the Responses field. `history`:
    the items of the turns before it (a stored response's context), in Responses item form."""
    store, previous = read_store(body, store_default)
    chat: dict = {}
    for name, value in body.items():
        if value is None:
            continue
        if name in _SAME_IN_CHAT:
            chat[name] = value
        elif name in ("input", "instructions"):
            pass  # below, together
        elif name == "max_output_tokens":
            chat["max_tokens"] = value
        elif name == "tools":
            chat["tools"] = _tools(value)
        elif name == "tool_choice":
            chat["tool_choice"] = _tool_choice(value)
        elif name == "text":
            chat.update(_text(value))
        elif name == "include":
            chat["logprobs"] = _include(value)
        elif name in ("store", "previous_response_id"):
            pass  # read_store, above
        elif name == "conversation":
            raise unsupported(name, _NO_CONVERSATIONS)
        elif name == "reasoning":
            chat.update(_reasoning(value))
        elif name == "metadata":
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise bad_request("'metadata' must be an object of string values.", param="metadata")
        elif name == "truncation":
            if value != "disabled":
                raise unsupported("truncation", " (only 'disabled' is: a prompt over the context is a 400)")
        elif name == "background":
            if value is not False:
                raise unsupported("background")
        elif name in _NO_OPS:
            if not isinstance(value, str):
                raise bad_request(f"'{name}' must be a string.", param=name)
        else:
            raise unsupported(name)
    if chat.get("top_logprobs") and not chat.get("logprobs"):
        chat["logprobs"] = True  # alternatives asked for: the logprobs come with them
    elif not chat.get("logprobs"):
        chat.pop("top_logprobs", None)  # 0 (or null) without the include: nothing to give
    messages, sources = _messages(body.get("input"), body.get("instructions"), history)
    chat["messages"] = messages
    try:
        parsed = parse_chat(chat, max_n)
    except APIError as error:
        raise _renamed(error, sources) from None
    echo = {key: body.get(key) for key in ("instructions", "max_output_tokens", "metadata", "temperature", "top_p",
                                           "tools", "tool_choice", "parallel_tool_calls", "text", "user")}
    return ResponsesRequest(parsed, echo, store, previous, [*history, *_as_items(body.get("input"))])


def _as_items(given) -> list[dict]:
    """The (checked) `input` as stored items, as OpenAI's input_items lists them: each with an id,
    a message's text as content parts."""
    items = [{"role": "user", "content": given}] if isinstance(given, str) else given
    stored = []
    for item in items:
        item = {"type": "message", **item}
        item.setdefault("id", _new_id(_ITEM_IDS[item["type"]]))
        if item["type"] == "message" and isinstance(item["content"], str):
            kind = "output_text" if item["role"] == "assistant" else "input_text"
            item["content"] = [{"type": kind, "text": item["content"]}]
        stored.append(item)
    return stored


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def _messages(items, instructions, history: list = ()) -> tuple[list[dict], list[str]]:
    """Chat messages, and for each the Responses field it came from (for error messages)."""
    messages, sources = [], []
    if instructions is not None:
        if not isinstance(instructions, str):
            raise bad_request("'instructions' must be a string.", param="instructions")
        messages.append({"role": "system", "content": instructions})
        sources.append("instructions")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
        named = ["input"]
    elif not isinstance(items, list) or not items:
        raise bad_request("'input' must be a string or a non-empty list of items.", param="input")
    else:
        named = [f"input[{i}]" for i in range(len(items))]
    # A stored response's items were checked when they came in; a refusal there names the link.
    for item, where in zip([*history, *items], ["previous_response_id"] * len(history) + named):
        if not isinstance(item, dict):
            raise bad_request(f"{where} must be an object (a message or a function_call/function_call_output item).",
                              param=where)
        kind = item.get("type", "message")
        if kind == "message":
            message = _message(item, where)
            previous = messages[-1] if messages else None
            messages.append(message)
            sources.append(where)
        elif kind == "function_call":
            call = _function_call(item, where)
            previous = messages[-1] if messages else None
            if previous is not None and previous["role"] == "assistant" and sources[-1] != "instructions":
                previous.setdefault("tool_calls", []).append(call)  # one assistant turn: its text and calls
            else:
                messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
                sources.append(where)
        elif kind == "function_call_output":
            messages.append(_function_call_output(item, where))
            sources.append(where)
        elif kind == "reasoning":  # an earlier answer's thinking: checked, left out (templates drop it too)
            _reasoning_item(item, where)
        else:
            raise unsupported(f"{where}.type", " (only message, reasoning, function_call and function_call_output "
                                               "items are)")
    return messages, sources


def _reasoning(value) -> dict:
    """`reasoning: {"effort", "summary"}`: the effort is chat's reasoning_effort ("none" turns a
    thinking model's thinking off); no summaries are written (the thinking comes whole), so any
    `summary` setting is accepted and changes nothing."""
    if not isinstance(value, dict):
        raise bad_request("'reasoning' must be an object: {'effort': ..., 'summary': ...}.", param="reasoning")
    _only_keys(value, "reasoning", ("effort", "summary", "generate_summary"))
    for key in ("summary", "generate_summary"):
        if value.get(key) not in (None, "auto", "concise", "detailed"):
            raise bad_request(f"'reasoning.{key}' must be 'auto', 'concise' or 'detailed'.", param=f"reasoning.{key}")
    return {"reasoning_effort": value["effort"]} if value.get("effort") is not None else {}


def _reasoning_item(item: dict, where: str) -> None:
    _only_keys(item, where, ("type", "id", "summary", "content", "encrypted_content", "status"))
    for key in ("summary", "content"):
        if not isinstance(item.get(key, []), list):
            raise bad_request(f"'{where}.{key}' must be a list of parts.", param=f"{where}.{key}")


def _message(item: dict, where: str) -> dict:
    _only_keys(item, where, ("type", "role", "content", "id", "status", "phase"))
    role = item.get("role")
    if role not in _INPUT_ROLES:
        raise bad_request(f"{where}.role is {role!r}; use one of {', '.join(_INPUT_ROLES)}.", param=f"{where}.role")
    return {"role": role, "content": _content(item.get("content"), f"{where}.content")}


def _content(content, where: str):
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise bad_request(f"{where} must be a string or a list of text parts.", param=where)
    parts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") not in _TEXT_PARTS or not isinstance(part.get("text"), str):
            raise unsupported(f"{where}[{j}]", " (only text parts are: {'type': 'input_text', 'text': ...})")
        parts.append({"type": "text", "text": part["text"]})
    return parts


def _function_call(item: dict, where: str) -> dict:
    _only_keys(item, where, ("type", "call_id", "name", "arguments", "id", "status"))
    for key in ("call_id", "name", "arguments"):
        if not isinstance(item.get(key), str):
            raise bad_request(f"{where}.{key} must be a string.", param=f"{where}.{key}")
    return {"id": item["call_id"], "type": "function",
            "function": {"name": item["name"], "arguments": item["arguments"]}}


def _function_call_output(item: dict, where: str) -> dict:
    _only_keys(item, where, ("type", "call_id", "output", "id", "status"))
    if not isinstance(item.get("call_id"), str):
        raise bad_request(f"{where}.call_id must be a string.", param=f"{where}.call_id")
    output = _content(item.get("output"), f"{where}.output")
    return {"role": "tool", "tool_call_id": item["call_id"], "content": output}


def _only_keys(item: dict, where: str, keys: tuple) -> None:
    for key in item:
        if key not in keys:
            raise unsupported(f"{where}.{key}")


def _tools(tools) -> list:
    if not isinstance(tools, list):
        raise bad_request("'tools' must be a list of function tools.", param="tools")
    chat_tools = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise unsupported(f"tools[{i}]", " (only function tools are: {'type': 'function', 'name': ..., "
                                             "'parameters': {...}})")
        chat_tools.append({"type": "function", "function": {k: v for k, v in tool.items() if k != "type"}})
    return chat_tools


def _tool_choice(choice):
    if isinstance(choice, dict) and choice.get("type") == "function" and set(choice) == {"type", "name"}:
        return {"type": "function", "function": {"name": choice["name"]}}
    if isinstance(choice, str):
        return choice
    raise bad_request("'tool_choice' must be 'auto', 'none', 'required' or {'type': 'function', 'name': ...}.",
                      param="tool_choice")


def _text(text) -> dict:
    if not isinstance(text, dict):
        raise bad_request("'text' must be an object like {'format': {'type': 'text'}}.", param="text")
    for key in text:
        if key != "format":
            raise unsupported(f"text.{key}")
    form = text.get("format")
    if form is None:
        return {}
    kind = form.get("type") if isinstance(form, dict) else None
    if kind == "json_schema":
        spec = {k: v for k, v in form.items() if k != "type"}
        return {"response_format": {"type": "json_schema", "json_schema": spec}}
    return {"response_format": form}  # text, json_object, or a 400 from parse_chat


def _include(include) -> bool:
    if not isinstance(include, list):
        raise bad_request("'include' must be a list.", param="include")
    for j, value in enumerate(include):
        if value != _LOGPROBS_INCLUDE:
            raise unsupported(f"include[{j}]", f" (only {_LOGPROBS_INCLUDE!r} is)")
    return bool(include)


_RENAMES = ((re.compile(r"\bmax_tokens\b"), "max_output_tokens"),
            (re.compile(r"\bresponse_format\.json_schema\b"), "text.format"),
            (re.compile(r"\bresponse_format\b"), "text.format"),
            (re.compile(r"\btools\[(\d+)\]\.function\b"), r"tools[\1]"),
            (re.compile(r"\breasoning_effort\b"), "reasoning.effort"))


def _renamed(error: APIError, sources: list[str]) -> APIError:
    """parse_chat's error, naming the Responses fields (messages[3] was input[2], ...)."""
    def rename(text: str | None) -> str | None:
        if text is None:
            return None
        text = re.sub(r"\bmessages\[(\d+)\]", lambda m: sources[int(m.group(1))] if int(m.group(1)) < len(sources)
                      else m.group(0), text)
        text = re.sub(r"\bMessage (\d+)\b", lambda m: sources[int(m.group(1))] if int(m.group(1)) < len(sources)
                      else m.group(0), text)  # the engine's name for messages[i]
        text = re.sub(r"\bmessages\b", "input", text)
        for pattern, replacement in _RENAMES:
            text = pattern.sub(replacement, text)
        return text
    return APIError(error.status, rename(error.message), error.type, rename(error.param), error.code, error.headers)
