"""Tool-call formats: one parser class per format, chosen from the model's chat template.

| name              | what the model writes                                        | models                      |
|-------------------|--------------------------------------------------------------|-----------------------------|
| `hermes`          | `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`   | Hermes 2/3, Qwen2.5, Qwen3; the fallback prompt |
| `llama3_json`     | `{"name": ..., "parameters": {...}}` (`;` between calls)     | Llama 3.1, 3.2, 3.3         |
| `llama3_pythonic` | `[get_weather(city="Paris")]`                                | Llama 3.2 (pythonic), Llama 4 |
| `phi4_mini`       | `functools[{"name": ..., "arguments": {...}}]`               | Phi-4-mini                  |
| `mistral`         | `[TOOL_CALLS][{"name": ..., "arguments": {...}}]`            | Mistral 7B v0.3, Nemo, Small |

`format_for_template` reads the template's own markers; a template with none of them gets
`hermes`, the format of ovchat's fallback prompt. `GenerationOptions(tool_format=...)` overrides it.
"""

from __future__ import annotations

from ..tool_calls import TOOL_FORMATS
from .base import CallSyntax, ParsedAnswer, ToolParser
from .hermes import HermesParser
from .incremental import CallDelta, IncrementalToolParser, TextDelta
from .llama3 import Llama3JsonParser, Llama3PythonicParser
from .marked_array import MistralParser, Phi4MiniParser

PARSERS: dict[str, type[ToolParser]] = {cls.name: cls for cls in (
    HermesParser, Llama3JsonParser, Llama3PythonicParser, Phi4MiniParser, MistralParser)}
assert tuple(PARSERS) == TOOL_FORMATS

# Markers in a chat template, most specific first: (text, format).
_TEMPLATE_MARKERS = (
    ("<tool_call>", "hermes"),
    ("functools", "phi4_mini"), ("<|tool|>", "phi4_mini"),
    ("[TOOL_CALLS]", "mistral"),
    ("[func_name1(", "llama3_pythonic"), ("<|python_start|>", "llama3_pythonic"),
    ("<|python_tag|>", "llama3_json"), ("ipython", "llama3_json"),
)

__all__ = ["CallDelta", "CallSyntax", "IncrementalToolParser", "PARSERS", "ParsedAnswer", "TextDelta", "ToolParser",
           "format_for_template", "parser_for"]


def format_for_template(template: str | None) -> str:
    """The call format a chat template teaches its model ("hermes" when it names none)."""
    for marker, name in _TEMPLATE_MARKERS:
        if template and marker in template:
            return name
    return "hermes"


def parser_for(tool_format: str, offered: tuple[str, ...] | None = None) -> ToolParser:
    """The parser of `tool_format`; `offered` names the request's tools (see ToolParser)."""
    return PARSERS[tool_format](offered)
