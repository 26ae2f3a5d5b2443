"""Function calling's data: the tools a request offers, the calls an answer makes, and the
chat-history messages that carry them.

    weather = Tool.from_openai({"type": "function", "function": {"name": "get_weather",
        "description": "Current weather", "parameters": {"type": "object",
        "properties": {"city": {"type": "string"}}, "required": ["city"]}}})
    result = engine.generate("Weather in Paris?", GenerationOptions(tools=(weather,)))
    result.finish_reason, result.tool_calls   # "tool_calls", (ToolCall(id=..., name="get_weather", arguments={"city": "Paris"}),)

A history takes the calls back as an assistant turn, and each result as a `tool` turn:

    {"role": "assistant", "content": "", "tool_calls": [call]}       # ToolCall objects or OpenAI's dicts
    {"role": "tool", "tool_call_id": call.id, "content": "18 °C, sunny"}

`tool_choice`: "auto" (the model answers in text or calls), "none" (no tools offered), "required"
(at least one call), or a tool's name (exactly that tool). See tool_parsers/ for the formats
models write calls in, and tool_grammar.py for the constraint that keeps every call parseable.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field

from .errors import OptionsError, PromptError

TOOL_CHOICES = ("auto", "none", "required")
TOOL_FORMATS = ("hermes", "llama3_json", "llama3_pythonic", "phi4_mini", "mistral")  # see tool_parsers/
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # OpenAI's rule for function names
_EMPTY_PARAMETERS = {"type": "object", "properties": {}}


@dataclass(frozen=True)
class Tool:
    """A function the model may call: its name, what it does, and its parameters' JSON schema."""
    name: str
    description: str = ""
    parameters: dict = field(default_factory=lambda: dict(_EMPTY_PARAMETERS))

    def __post_init__(self):
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise OptionsError(f"Tool name {self.name!r} must be 1 to 64 letters, digits, '_' or '-'.")
        if not isinstance(self.description, str):
            raise OptionsError(f"Tool {self.name!r}: description must be a string.")
        if not isinstance(self.parameters, dict):
            raise OptionsError(f"Tool {self.name!r}: parameters must be a JSON schema object (a dict).")
        try:
            json.dumps(self.parameters)
        except (TypeError, ValueError) as error:
            raise OptionsError(f"Tool {self.name!r}: parameters cannot be written as JSON: {error}.") from None

    __hash__ = None  # holds a dict

    @classmethod
    def from_openai(cls, spec: dict) -> "Tool":
        """From OpenAI's `{"type": "function", "function": {"name", "description", "parameters"}}`,
        or the bare function dict."""
        if not isinstance(spec, dict):
            raise OptionsError(f"A tool must be a dict like {{'type': 'function', 'function': {{...}}}}, got {spec!r}.")
        function = spec.get("function", spec) if spec.get("type", "function") == "function" else None
        if not isinstance(function, dict) or "name" not in function:
            raise OptionsError("A tool must be {'type': 'function', 'function': {'name': ..., 'parameters': {...}}}.")
        parameters = function.get("parameters")
        return cls(function["name"], function.get("description") or "",
                   dict(_EMPTY_PARAMETERS) if parameters is None else parameters)

    def to_openai(self) -> dict:
        """OpenAI's (and Hugging Face chat templates') form of this tool."""
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}


@dataclass(frozen=True)
class ToolCall:
    """A call the model made: `arguments` is the parsed JSON object."""
    id: str
    name: str
    arguments: dict

    __hash__ = None  # holds a dict

    @staticmethod
    def new_id() -> str:
        return f"call_{uuid.uuid4().hex[:24]}"

    def to_openai(self) -> dict:
        """OpenAI's wire form: the arguments as JSON text."""
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": json.dumps(self.arguments, ensure_ascii=False)}}

    def to_template(self) -> dict:
        """The form chat templates read (Hugging Face's convention): the arguments as an object."""
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}

    @classmethod
    def from_openai(cls, call, where: str = "tool call", param: str | None = None) -> "ToolCall":
        """From a ToolCall or OpenAI's dict (arguments as JSON text or an object); PromptError if
        malformed (`param`: the call's field path, for the error)."""
        if isinstance(call, ToolCall):
            return call
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise PromptError(f"{where} must be {{'id': ..., 'type': 'function', 'function': {{'name': ..., "
                              "'arguments': ...}}}.", param=param)
        arguments = function.get("arguments", {})
        arguments_param = param and f"{param}.function.arguments"
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError as error:
                raise PromptError(f"{where}'s arguments are not valid JSON ({error}); send the JSON object text.",
                                  param=arguments_param) from None
        if not isinstance(arguments, dict):
            raise PromptError(f"{where}'s arguments must be a JSON object, got {arguments!r}.", param=arguments_param)
        call_id = call.get("id") or cls.new_id()
        if not isinstance(call_id, str):
            raise PromptError(f"{where}'s id must be a string.", param=param and f"{param}.id")
        return cls(call_id, function["name"], arguments)


def check_tools(tools) -> tuple[Tool, ...]:
    """Tools as a tuple of Tool (from Tool objects or OpenAI's dicts); names must be unique."""
    if isinstance(tools, (Tool, dict)):
        tools = (tools,)
    if not isinstance(tools, (list, tuple)):
        raise OptionsError("tools must be a list of Tool objects or OpenAI function definitions.")
    checked = tuple(t if isinstance(t, Tool) else Tool.from_openai(t) for t in tools)
    names = [t.name for t in checked]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise OptionsError(f"Two tools share the name {repeated[0]!r}; give each tool its own name.")
    return checked


def check_tool_choice(choice, tools: tuple[Tool, ...]) -> str:
    """"auto", "none", "required" or a tool's name (also OpenAI's {"type": "function", "function": {"name"}})."""
    if isinstance(choice, dict):
        choice = (choice.get("function") or {}).get("name") if choice.get("type") == "function" else None
    if not isinstance(choice, str):
        raise OptionsError("tool_choice must be 'auto', 'none', 'required' or the name of an offered tool.")
    if choice in TOOL_CHOICES:
        if choice == "required" and not tools:
            raise OptionsError("tool_choice='required' needs at least one tool in tools.")
        return choice
    if choice not in {t.name for t in tools}:
        offered = ", ".join(t.name for t in tools) or "none"
        raise OptionsError(f"tool_choice names {choice!r}, which is not among the tools offered ({offered}).")
    return choice


def check_tool_messages(messages: list[dict]) -> list[dict]:
    """Normalise the tool parts of a checked history: assistant `tool_calls` become the template
    form (arguments as objects), each `tool` turn must answer a call made before it. PromptError
    names the message otherwise."""
    made: set[str] = set()
    out = []
    for i, message in enumerate(messages):
        message = dict(message)
        calls = message.get("tool_calls")
        if calls is not None:
            if message["role"] != "assistant":
                raise PromptError(f"Message {i}: only assistant messages carry tool_calls.", param=f"messages[{i}].tool_calls")
            if not isinstance(calls, (list, tuple)):
                raise PromptError(f"Message {i}: tool_calls must be a list of calls.", param=f"messages[{i}].tool_calls")
            parsed = [ToolCall.from_openai(call, f"Message {i} tool_calls[{j}]", f"messages[{i}].tool_calls[{j}]")
                      for j, call in enumerate(calls)]
            made.update(c.id for c in parsed)
            message["tool_calls"] = [c.to_template() for c in parsed]
            if message.get("content") is None:
                message["content"] = ""
        if message["role"] == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or call_id not in made:
                raise PromptError(f"Message {i} (role 'tool') has tool_call_id {call_id!r}, which answers no "
                                  "tool call of an earlier assistant message; send the assistant turn with its tool_calls first.",
                                  param=f"messages[{i}].tool_call_id")
        out.append(message)
    return out
