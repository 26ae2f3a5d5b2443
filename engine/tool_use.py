"""Tools in a request: how the prompt offers them, and how the answer's calls are read back.

The prompt: a chat template that knows tools (it renders a probe tool: Qwen2.5, Llama 3.1,
Hermes, Mistral, Phi-4-mini...) gets them through openvino_genai's
`apply_chat_template(..., tools=...)`, with the history's calls and results as the template
expects them. A template that knows none (SmolLM2's, the default model's) gets ovchat's
**fallback**: a system prompt that lists the tools as JSON and shows the call format (Hermes
`<tool_call>` unless `tool_format` says otherwise), past calls written into their assistant
turns in that format, and tool results sent as user turns inside `<tool_response>` tags (what
Qwen2.5's template does), so strict user/assistant templates accept them.

The answer: the format's parser (tool_parsers/) splits it into text and calls as it streams
(stream.Feed, once per request); the result then carries `tool_calls`, its `text` what was said
outside them, and finish_reason "tool_calls".
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from .options import GenerationOptions
from .tool_calls import ToolCall
from .tool_grammar import tool_grammar
from .tool_parsers import format_for_template, parser_for

FALLBACK_PROMPT = """# Tools

You may call one or more functions to answer the user. The functions, as JSON signatures:
<tools>
{tools}
</tools>

To call a function, write exactly:
{example}{must}"""
_MUST = {"required": "\n\nAnswer with a function call.", "auto": "", "none": ""}
_USES_TOOLS = re.compile(r"\btools\b")


@dataclass(frozen=True)
class ToolPrompt:
    messages: list[dict]          # what the chat template renders
    tools: list[dict] | None      # what it gets as `tools` (None: none, or the fallback put them in the messages)
    tool_format: str | None       # the answer's call format, when tools are offered
    grammar: str | None           # the structural-tag constraint (tool_grammar.py), or None


def plan(messages: list[dict], options: GenerationOptions, tokenizer) -> ToolPrompt:
    """How `messages` (checked, see prompt.check_messages) go to the template with `options`' tools."""
    has_tool_turns = any(m.get("tool_calls") or m["role"] == "tool" for m in messages)
    if not options.offers_tools and not has_tool_turns:
        return ToolPrompt(messages, None, None, None)
    template = tokenizer.chat_template
    tool_format = options.tool_format or format_for_template(template)
    parser = parser_for(tool_format)
    offered = [t.to_openai() for t in options.tools] if options.offers_tools else None
    grammar = (tool_grammar(options.tools, options.tool_choice, options.parallel_tool_calls, parser.syntax)
               if options.offers_tools and options.constrain_tool_calls else None)
    answer_format = tool_format if options.offers_tools else None
    if knows_tools(tokenizer):
        return ToolPrompt(messages, offered, answer_format, grammar)
    return ToolPrompt(_fallback(messages, offered, parser, options.tool_choice), None, answer_format, grammar)


def knows_tools(tokenizer) -> bool:
    """Whether the chat template itself renders tools: it uses the `tools` variable.

    (Rendering a probe tool cannot tell: openvino_genai's Jinja engine, minja, "polyfills" a
    template that knows no tools with a system prompt of its own, asking for a generic
    `{"tool_calls": [...]}` JSON that matches no parser here. Measured on SmolLM2's template.)"""
    return bool(_USES_TOOLS.search(tokenizer.chat_template or ""))


def _fallback(messages: list[dict], offered: list[dict] | None, parser, choice: str) -> list[dict]:
    out = [dict(m) for m in messages]
    for i, message in enumerate(out):
        if message.get("tool_calls"):
            calls = [ToolCall(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in message["tool_calls"]]
            written = parser.write_calls(calls)
            out[i] = {"role": "assistant", "content": f"{message['content']}\n{written}".strip()}
        elif message["role"] == "tool":
            out[i] = {"role": "user", "content": f"<tool_response>\n{message['content']}\n</tool_response>"}
    out = _merge_tool_responses(out, messages)
    if offered:
        listed = "\n".join(json.dumps(t, ensure_ascii=False) for t in offered)
        must = _MUST.get(choice, f"\n\nAnswer with a call of {choice}.")
        block = FALLBACK_PROMPT.format(tools=listed, example=parser.example(), must=must)
        if out[0]["role"] == "system":
            out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{block}"}
        else:
            out.insert(0, {"role": "system", "content": block})
    return out


def _merge_tool_responses(rendered: list[dict], original: list[dict]) -> list[dict]:
    """Consecutive tool results become one user turn (strict templates want turns to alternate)."""
    merged = []
    for message, source in zip(rendered, original):
        if source["role"] == "tool" and merged and merged[-1][1]:
            merged[-1] = ({"role": "user", "content": merged[-1][0]["content"] + "\n" + message["content"]}, True)
        else:
            merged.append((message, source["role"] == "tool"))
    return [m for m, _ in merged]

