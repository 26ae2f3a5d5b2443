"""The Anthropic Messages API's requests (`POST /v1/messages`, `/v1/messages/count_tokens`),
rewritten as chat-completions requests.

A body is rewritten as a chat-completions body and checked by protocol.parse_chat, as the
Responses API's is, so every endpoint shares one set of rules and one engine path: `system`
(a string or text blocks) becomes the system message; a user message's `tool_result` blocks
become `tool` messages and its text a user message; an assistant message's `text` and
`tool_use` blocks become one assistant turn with `tool_calls`; `tools` (`input_schema`) become
function tools; `tool_choice` auto/any/tool/none becomes auto/required/the named function/none;
`stop_sequences` becomes `stop`; `output_config.format` (a JSON schema) becomes
`response_format`. A refusal names the Anthropic field (`messages[2].content[1]`).

Unknown fields are a 400 naming them, as on the OpenAI routes. Accepted and changing nothing:
`cache_control` anywhere (the prefix cache is always on), `metadata.user_id`,
`service_tier`, thinking blocks in an assistant's history (Anthropic's API drops earlier
turns' thinking too), `context_management` edits that clear thinking (none is kept), and
`output_config.effort` (no thinking budget here). System messages may come mid-conversation.
`thinking` maps onto the reasoning fields (`thinking_fields`); `ignore_eos`, ovchat's
extension, as on the OpenAI routes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from .protocol import APIError, ChatRequest, bad_request, parse_chat, unsupported

# Fields chat completions takes under the same name and meaning.
# ignore_eos: ovchat's extension, as on the OpenAI routes (benchmarks ask for exactly max_tokens).
_SAME_IN_CHAT = ("model", "max_tokens", "temperature", "top_p", "top_k", "stream", "ignore_eos")
_NO_OPS = ("cache_control",)       # a cache hint: the prefix cache is on anyway
_TEXT_ONLY = " (only text, tool_use and tool_result blocks are)"
_EFFORTS = ("low", "medium", "high", "xhigh", "max")


@dataclass(frozen=True)
class MessagesRequest:
    chat: ChatRequest               # the same request, as chat completions reads it
    stop_sequences: tuple = ()
    show_thinking: bool = True      # thinking.display "omitted": no thinking blocks in the answer


def parse_messages(body: dict, max_n: int, count_only: bool = False) -> MessagesRequest:
    """A /v1/messages body (or a count_tokens one: no max_tokens), checked; raises APIError(400)
    naming the Anthropic field."""
    chat: dict = {}
    show_thinking = True
    for name, value in body.items():
        if value is None:
            continue
        if count_only and name in ("max_tokens", "stream"):
            raise unsupported(name, " by count_tokens (it generates nothing)")
        if name in _SAME_IN_CHAT:
            chat[name] = value
        elif name in ("messages", "system"):
            pass  # below, together
        elif name == "stop_sequences":
            if not isinstance(value, list):
                raise bad_request("'stop_sequences' must be a list of strings.", param="stop_sequences")
            if value:
                chat["stop"] = value
        elif name == "tools":
            chat["tools"] = _tools(value)
        elif name == "tool_choice":
            chat.update(_tool_choice(value))
        elif name == "thinking":
            chat.update(thinking_fields(value))
            show_thinking = value.get("display") != "omitted"
        elif name == "output_config":
            chat.update(_output_config(value))
        elif name == "context_management":
            _context_management(value)
        elif name == "metadata":
            _only_keys(value, "metadata", ("user_id",))
            if value.get("user_id") is not None and not isinstance(value["user_id"], str):
                raise bad_request("'metadata.user_id' must be a string.", param="metadata.user_id")
        elif name == "service_tier":
            if value not in ("auto", "standard_only"):
                raise bad_request("'service_tier' must be 'auto' or 'standard_only'.", param="service_tier")
        elif name in _NO_OPS:
            _cache_control(value, name)
        else:
            raise unsupported(name)
    if count_only:
        chat["max_tokens"] = 1
    elif "max_tokens" not in chat:  # as Anthropic's API: the client says how long an answer may be
        raise bad_request("'max_tokens' is required: the most tokens the answer may have.", param="max_tokens")
    if chat.get("tool_choice") == "none" and "tools" not in chat:
        chat.pop("tool_choice")  # Anthropic allows none without tools; chat completions has nothing to turn off
    messages, sources = _messages(body.get("messages"), body.get("system"))
    if messages[-1]["role"] == "assistant":  # Anthropic's prefill; the chat template would start a new turn
        raise unsupported(f"messages[{len(body['messages']) - 1}]", " as the last message (an assistant prefill, "
                          "which the model would not continue); end with a user message")
    chat["messages"] = messages
    try:
        parsed = parse_chat(chat, max_n)
    except APIError as error:
        raise _renamed(error, sources) from None
    return MessagesRequest(parsed, tuple(chat.get("stop", ())), show_thinking)


def thinking_fields(value) -> dict:
    """`thinking` as chat-completions fields (server.md, Thinking models): disabled is
    reasoning_effort "none" (a 400 from a model whose template cannot turn thinking off),
    adaptive leaves the model's default (Claude Code sends it), enabled asks for thinking (a
    model that cannot think answers without). There is no thinking budget: budget_tokens is
    checked, not enforced (max_tokens bounds thinking and answer together)."""
    kind = value.get("type") if isinstance(value, dict) else None
    keys = {"disabled": {"type"}, "adaptive": {"type", "display"}, "enabled": {"type", "budget_tokens", "display"}}
    if kind not in keys or not set(value) <= keys[kind]:
        raise bad_request("'thinking' must be {'type': 'disabled'}, {'type': 'adaptive'} or "
                          "{'type': 'enabled', 'budget_tokens': N}.", param="thinking")
    if value.get("display") not in (None, "summarized", "omitted"):
        raise bad_request("'thinking.display' must be 'summarized' or 'omitted'.", param="thinking.display")
    budget = value.get("budget_tokens")
    if kind == "enabled" and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 1):
        raise bad_request("'thinking.budget_tokens' must be a whole number >= 1.", param="thinking.budget_tokens")
    return {"disabled": {"reasoning_effort": "none"}, "adaptive": {}, "enabled": {"reasoning_effort": "high"}}[kind]


def _messages(items, system) -> tuple[list[dict], list[str]]:
    """Chat messages, and for each the Anthropic field it came from (for error messages)."""
    messages, sources = [], []
    if system is not None:
        messages.append({"role": "system", "content": _text(system, "system")})
        sources.append("system")
    if not isinstance(items, list) or not items:
        raise bad_request("'messages' must be a non-empty list of {'role', 'content'} objects.", param="messages")
    for i, item in enumerate(items):
        where = f"messages[{i}]"
        if not isinstance(item, dict):
            raise bad_request(f"{where} must be an object with 'role' and 'content'.", param=where)
        _only_keys(item, where, ("role", "content"))
        role, content = item.get("role"), item.get("content")
        if role not in ("user", "assistant", "system"):
            raise bad_request(f"{where}.role is {role!r}; use 'user', 'assistant' or 'system'.", param=f"{where}.role")
        if role == "system":  # a system message mid-conversation (Claude Code sends them)
            messages.append({"role": "system", "content": _text(content, f"{where}.content")})
            sources.append(where)
        elif isinstance(content, str):
            messages.append({"role": role, "content": content})
            sources.append(where)
        elif isinstance(content, list) and content:
            turn = _user_turn if role == "user" else _assistant_turn
            for message, source in turn(content, f"{where}.content"):
                messages.append(message)
                sources.append(source)
        else:
            raise bad_request(f"{where}.content must be a string or a non-empty list of content blocks.",
                              param=f"{where}.content")
    return messages, sources


def _user_turn(blocks: list, where: str):
    """A user message's blocks, in order: each tool_result a tool message; runs of text one user message."""
    texts, first = [], None
    for j, block in enumerate(blocks):
        kind = _block_type(block, f"{where}[{j}]")
        if kind == "text":
            texts.append(_text_block(block, f"{where}[{j}]"))
            first = first or f"{where}[{j}]"
        elif kind == "tool_result":
            if texts:
                yield {"role": "user", "content": "\n".join(texts)}, first
                texts, first = [], None
            yield _tool_result(block, f"{where}[{j}]"), f"{where}[{j}]"
        else:
            raise unsupported(f"{where}[{j}]", f" in a user message{_TEXT_ONLY}")
    if texts:
        yield {"role": "user", "content": "\n".join(texts)}, first


def _assistant_turn(blocks: list, where: str):
    """An assistant message's blocks as one assistant turn: its text, then its calls."""
    texts, calls = [], []
    for j, block in enumerate(blocks):
        kind = _block_type(block, f"{where}[{j}]")
        if kind == "text":
            texts.append(_text_block(block, f"{where}[{j}]"))
        elif kind == "tool_use":
            calls.append(_tool_use(block, f"{where}[{j}]"))
        elif kind in ("thinking", "redacted_thinking"):
            continue  # an earlier turn's thinking: not part of the context (Anthropic drops it too)
        else:
            raise unsupported(f"{where}[{j}]", f" in an assistant message{_TEXT_ONLY}")
    message = {"role": "assistant", "content": "".join(texts)}
    if calls:
        message["tool_calls"] = calls
    yield message, where.rsplit(".", 1)[0]


def _block_type(block, where: str) -> str:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        raise bad_request(f"{where} must be a content block: an object with a 'type'.", param=where)
    return block["type"]


def _text_block(block: dict, where: str) -> str:
    _only_keys(block, where, ("type", "text", "cache_control", "citations"))
    if not isinstance(block.get("text"), str):
        raise bad_request(f"{where}.text must be a string.", param=f"{where}.text")
    _cache_control(block.get("cache_control"), f"{where}.cache_control")
    if block.get("citations"):
        raise unsupported(f"{where}.citations")
    return block["text"]


def _tool_use(block: dict, where: str) -> dict:
    _only_keys(block, where, ("type", "id", "name", "input", "cache_control"))
    for key in ("id", "name"):
        if not isinstance(block.get(key), str):
            raise bad_request(f"{where}.{key} must be a string.", param=f"{where}.{key}")
    if not isinstance(block.get("input"), dict):
        raise bad_request(f"{where}.input must be an object (the call's arguments).", param=f"{where}.input")
    _cache_control(block.get("cache_control"), f"{where}.cache_control")
    return {"id": block["id"], "type": "function",
            "function": {"name": block["name"], "arguments": json.dumps(block["input"], ensure_ascii=False)}}


def _tool_result(block: dict, where: str) -> dict:
    _only_keys(block, where, ("type", "tool_use_id", "content", "is_error", "cache_control"))
    if not isinstance(block.get("tool_use_id"), str):
        raise bad_request(f"{where}.tool_use_id must be the id of the tool_use this result answers.",
                          param=f"{where}.tool_use_id")
    is_error = block.get("is_error", False)
    if not isinstance(is_error, bool):
        raise bad_request(f"{where}.is_error must be true or false.", param=f"{where}.is_error")
    _cache_control(block.get("cache_control"), f"{where}.cache_control")
    content = block.get("content", "")
    text = content if isinstance(content, str) else _text(content, f"{where}.content")
    # The chat template has no place for the flag: the model reads it in the result's text.
    return {"role": "tool", "tool_call_id": block["tool_use_id"], "content": f"Error: {text}" if is_error else text}


def _text(value, where: str) -> str:
    """A string, or a list of text blocks joined (the system prompt, a tool result's content)."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise bad_request(f"'{where}' must be a string or a list of text blocks.", param=where)
    texts = []
    for j, block in enumerate(value):
        if _block_type(block, f"{where}[{j}]") != "text":
            raise unsupported(f"{where}[{j}]", " (only text blocks are: {'type': 'text', 'text': ...})")
        texts.append(_text_block(block, f"{where}[{j}]"))
    return "\n".join(texts)


def _cache_control(value, where: str) -> None:
    if value is not None and (not isinstance(value, dict) or value.get("type") != "ephemeral"):
        raise bad_request(f"'{where}' must be {{'type': 'ephemeral'}}.", param=where)


def _only_keys(item, where: str, keys: tuple) -> None:
    if not isinstance(item, dict):
        raise bad_request(f"'{where}' must be an object.", param=where)
    for key in item:
        if key not in keys:
            raise unsupported(f"{where}.{key}")


def _tools(tools) -> list:
    if not isinstance(tools, list):
        raise bad_request("'tools' must be a list of {'name', 'description', 'input_schema'} objects.", param="tools")
    chat_tools = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise bad_request(f"{where} must be an object with 'name' and 'input_schema'.", param=where)
        if tool.get("type", "custom") not in ("custom", None):
            raise unsupported(f"{where}", f" (a server tool {tool.get('type')!r}; only client tools with an "
                                          "'input_schema' are)")
        _only_keys(tool, where, ("type", "name", "description", "input_schema", "cache_control", "strict"))
        _cache_control(tool.get("cache_control"), f"{where}.cache_control")
        if not isinstance(tool.get("input_schema"), dict):
            raise bad_request(f"{where}.input_schema must be a JSON schema object.", param=f"{where}.input_schema")
        function = {"name": tool.get("name"), "parameters": tool["input_schema"]}
        for key in ("description", "strict"):
            if key in tool:
                function[key] = tool[key]
        chat_tools.append({"type": "function", "function": function})
    return chat_tools


def _tool_choice(choice) -> dict:
    kind = choice.get("type") if isinstance(choice, dict) else None
    keys = {"auto": ("type", "disable_parallel_tool_use"), "any": ("type", "disable_parallel_tool_use"),
            "tool": ("type", "name", "disable_parallel_tool_use"), "none": ("type",)}
    if kind not in keys:
        raise bad_request("'tool_choice' must be {'type': 'auto'}, {'type': 'any'}, {'type': 'tool', 'name': ...} "
                          "or {'type': 'none'}.", param="tool_choice")
    _only_keys(choice, "tool_choice", keys[kind])
    fields = {"tool_choice": {"auto": "auto", "any": "required", "none": "none"}.get(kind)}
    if kind == "tool":
        if not isinstance(choice.get("name"), str):
            raise bad_request("'tool_choice.name' must name one of the tools.", param="tool_choice.name")
        fields["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    if "disable_parallel_tool_use" in choice:
        fields["parallel_tool_calls"] = not choice["disable_parallel_tool_use"]  # a bool: parse_chat checks it
        if not isinstance(choice["disable_parallel_tool_use"], bool):
            raise bad_request("'tool_choice.disable_parallel_tool_use' must be true or false.",
                              param="tool_choice.disable_parallel_tool_use")
    return fields


def _output_config(value) -> dict:
    _only_keys(value, "output_config", ("format", "effort"))
    fields = effort_fields(value.get("effort"))
    form = value.get("format")
    if form is None:
        return fields
    if not isinstance(form, dict) or form.get("type") != "json_schema" or not isinstance(form.get("schema"), dict):
        raise bad_request("'output_config.format' must be {'type': 'json_schema', 'schema': {...}}.",
                          param="output_config.format")
    _only_keys(form, "output_config.format", ("type", "schema"))
    return {**fields, "response_format": {"type": "json_schema", "json_schema": {"name": "output", "schema": form["schema"]}}}


def effort_fields(effort) -> dict:
    """`output_config.effort` (how much to think; Claude Code sends "high") as chat-completions
    fields: with thinking, the place to map it onto reasoning_effort; a model that cannot think
    has one level, so every level is accepted and changes nothing."""
    if effort is not None and effort not in _EFFORTS:
        raise bad_request(f"'output_config.effort' must be one of {', '.join(_EFFORTS)}.", param="output_config.effort")
    return {}


def _context_management(value) -> None:
    """Context editing: clearing earlier thinking is what this server always does (it keeps none);
    clearing tool results it does not do, so that is a 400."""
    _only_keys(value, "context_management", ("edits",))
    edits = value.get("edits", [])
    if not isinstance(edits, list):
        raise bad_request("'context_management.edits' must be a list.", param="context_management.edits")
    for i, edit in enumerate(edits):
        kind = edit.get("type") if isinstance(edit, dict) else None
        if not (isinstance(kind, str) and kind.startswith("clear_thinking_")):
            raise unsupported(f"context_management.edits[{i}]", " (only clear_thinking edits are: this server "
                                                                 "keeps no thinking, and clears no tool results)")


_RENAMES = ((re.compile(r"\btools\[(\d+)\]\.function\.parameters\b"), r"tools[\1].input_schema"),
            (re.compile(r"\btools\[(\d+)\]\.function\b"), r"tools[\1]"),
            (re.compile(r"\bresponse_format\.json_schema\b"), "output_config.format"),
            (re.compile(r"\bresponse_format\b"), "output_config.format"),
            (re.compile(r"'stop'"), "'stop_sequences'"), (re.compile(r"^stop$"), "stop_sequences"),
            (re.compile(r"'required'"), "{'type': 'any'}"))


def _renamed(error: APIError, sources: list[str]) -> APIError:
    """parse_chat's error, naming the Anthropic fields (messages[3] was messages[2].content[1], ...)."""
    def rename(text: str | None) -> str | None:
        if text is None:
            return None
        text = re.sub(r"\bmessages\[(\d+)\]|\bMessage (\d+)\b", lambda m: _source(sources, m), text)
        for old, new in _RENAMES:
            text = old.sub(new, text)
        return text
    return APIError(error.status, rename(error.message), error.type, rename(error.param), error.code, error.headers)


def _source(sources: list[str], match) -> str:
    index = int(match.group(1) or match.group(2))
    return sources[index] if index < len(sources) else match.group(0)
