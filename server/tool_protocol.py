"""Function calling on the wire (OpenAI's chat completions shape): `tools`, `tool_choice`,
assistant messages with `tool_calls` and `tool` messages in a request; `message.tool_calls` and
streamed tool-call deltas in a response. Every refusal is a 400 naming its field.
"""

from __future__ import annotations

from ..engine.errors import OptionsError, PromptError
from ..engine.tool_calls import TOOL_CHOICES, Tool, ToolCall, check_tool_messages
from ..engine.tool_parsers import CallDelta
from . import errors

_FUNCTION_KEYS = ("name", "description", "parameters", "strict")


def parse_tools(value, name: str) -> tuple[Tool, ...]:
    if not isinstance(value, list):
        raise errors.bad_request(f"'{name}' must be a list of {{'type': 'function', 'function': {{...}}}} objects.", param=name)
    tools = []
    for i, spec in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(spec, dict) or spec.get("type") != "function" or not isinstance(spec.get("function"), dict):
            raise errors.bad_request(f"'{where}' must be {{'type': 'function', 'function': {{'name': ..., 'parameters': {{...}}}}}} "
                              "(function tools only).", param=where)
        for key in spec:
            if key not in ("type", "function"):
                raise errors.unsupported(f"{where}.{key}")
        function = spec["function"]
        for key in function:
            if key not in _FUNCTION_KEYS:
                raise errors.unsupported(f"{where}.function.{key}")
        if not isinstance(function.get("name"), str):
            raise errors.bad_request(f"'{where}.function.name' must be a string.", param=f"{where}.function.name")
        if function.get("parameters") is not None and not isinstance(function["parameters"], dict):
            raise errors.bad_request(f"'{where}.function.parameters' must be a JSON schema object.",
                              param=f"{where}.function.parameters")
        try:  # strict or not: the grammar always holds
            tools.append(Tool.from_openai(spec))
        except OptionsError as error:
            raise errors.bad_request(str(error), param=f"{where}.function.name") from None
    names = [t.name for t in tools]
    for i, tool_name in enumerate(names):
        if names.index(tool_name) != i:
            raise errors.bad_request(f"Two tools share the name {tool_name!r}; give each its own.", param=f"{name}[{i}].function.name")
    return tuple(tools)


def parse_tool_choice(value, name: str):
    if isinstance(value, str) and value in TOOL_CHOICES:
        return value
    if (isinstance(value, dict) and value.get("type") == "function" and isinstance(value.get("function"), dict)
            and isinstance(value["function"].get("name"), str)):
        return value["function"]["name"]
    raise errors.bad_request(f"'{name}' must be 'auto', 'none', 'required' or "
                      "{'type': 'function', 'function': {'name': ...}}.", param=name)


def check_tool_choice(choice, tools: tuple[Tool, ...]) -> str:
    choice = "auto" if choice is None else choice
    if choice not in TOOL_CHOICES and choice not in {t.name for t in tools}:
        offered = ", ".join(t.name for t in tools) or "none"
        raise errors.bad_request(f"'tool_choice' names the function {choice!r}, which is not among the tools offered "
                          f"({offered}).", param="tool_choice")
    if choice == "required" and not tools:
        raise errors.bad_request("'tool_choice' is 'required' but no tools are offered.", param="tool_choice")
    return choice


def message_tool_fields(message: dict, role: str, where: str) -> dict:
    """The tool fields of one request message, checked for their shape: `tool_calls` (assistant),
    `tool_call_id` (tool). Whether they fit together is `check_history`'s job."""
    fields = {}
    if "tool_calls" in message and message["tool_calls"] is not None:
        if role != "assistant":
            raise errors.bad_request(f"{where}.tool_calls: only assistant messages carry tool calls.", param=f"{where}.tool_calls")
        calls = message["tool_calls"]
        if not isinstance(calls, list):
            raise errors.bad_request(f"{where}.tool_calls must be a list.", param=f"{where}.tool_calls")
        for j, call in enumerate(calls):
            arguments = (call.get("function") or {}).get("arguments") if isinstance(call, dict) else None
            if not isinstance(arguments, (str, dict)):
                raise errors.bad_request(f"{where}.tool_calls[{j}] must be {{'id', 'type': 'function', 'function': "
                                  "{'name', 'arguments': '<JSON text>'}}.", param=f"{where}.tool_calls[{j}]")
        fields["tool_calls"] = calls
    if role == "tool":
        call_id = message.get("tool_call_id")
        if not isinstance(call_id, str):
            raise errors.bad_request(f"{where}.tool_call_id must be the id of the call this message answers.",
                              param=f"{where}.tool_call_id")
        fields["tool_call_id"] = call_id
    elif "tool_call_id" in message:
        raise errors.bad_request(f"{where}.tool_call_id belongs on 'tool' messages only.", param=f"{where}.tool_call_id")
    return fields


def check_history(messages: list[dict]) -> None:
    """Calls and results must fit together (engine/tool_calls.py): a 400 naming the field if not."""
    try:
        check_tool_messages(messages)
    except PromptError as error:
        raise errors.bad_request(str(error), param=error.param or "messages") from None


def call_json(call: ToolCall) -> dict:
    return call.to_openai()


def delta_json(delta: CallDelta) -> dict:
    """One streamed tool-call delta, as OpenAI sends them: the first with id, type and name."""
    if delta.id is not None:
        return {"index": delta.index, "id": delta.id, "type": "function",
                "function": {"name": delta.name, "arguments": delta.arguments}}
    return {"index": delta.index, "function": {"arguments": delta.arguments}}
