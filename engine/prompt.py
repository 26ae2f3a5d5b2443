"""Turn what the caller passes (text, chat messages or token ids) into LLMPipeline input,
fitted to the model's context window."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import numpy as np
import openvino as ov
import openvino_genai as ov_genai

from . import reasoning, structural_tags
from .errors import OptionsError, PromptError
from .options import GenerationOptions
from .tool_calls import check_tool_messages
from .tool_use import plan as plan_tools
from .tokenizer import Tokenizer

ROLES = ("system", "user", "assistant", "tool")


@dataclass(frozen=True)
class PreparedPrompt:
    inputs: object                 # str, ov_genai.ChatHistory or ov.Tensor of token ids
    options: GenerationOptions     # max_new_tokens clamped to the room left in the context
    ids: tuple[int, ...]           # what the model is fed: the templated prompt's tokens, encoded once
    text: str | None = None        # the prompt as the model sees it (templated); None for token ids
    templated: bool = False        # text came from the chat template (which writes its own special tokens)
    messages: list | None = None   # the messages actually sent, after trimming
    dropped_messages: int = 0
    tool_format: str | None = None  # tools offered: the format their calls are read in (tool_parsers/)
    tool_grammar: str | None = None  # and the constraint that keeps calls parseable (tool_grammar.py)
    thinking: reasoning.Thinking | None = None  # a thinking model's markers (reasoning.py)
    thinking_start: str = reasoning.OFF          # where the prompt leaves it: INSIDE, MAY_OPEN or OFF

    @property
    def input_tokens(self) -> int:
        return len(self.ids)

    @property
    def thinks(self) -> bool:
        """Whether the answer may hold a thinking (the model thinks, and the template left it on)."""
        return self.thinking is not None and self.thinking_start != reasoning.OFF

    @property
    def structure(self) -> tuple[str, str] | None:
        """The constraint generation compiles: the options' own, or the tools' grammar; for a
        thinking model, on what follows its thinking."""
        if self.tool_grammar:
            kind, text = "structural_tags_config", self.tool_grammar
        elif self.options.structure:
            kind, text = self.options.structure
        else:
            return None
        if not self.thinks:
            return (kind, text)
        return ("structural_tags_config", structural_tags.structural_tag(
            reasoning.constrained(_format(kind, text), self.thinking, self.thinking_start)))


_KEYS = {"role", "content", "tool_calls", "tool_call_id", "name"}


def check_messages(messages) -> list[dict]:
    """Checked copies of chat messages: {"role", "content"}; an assistant turn may carry
    `tool_calls` (its content may then be empty or None), a `tool` turn its `tool_call_id`."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise PromptError("Messages must be a non-empty list of {'role': ..., 'content': ...} dicts.")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or set(message) - _KEYS or "role" not in message:
            raise PromptError(f"Message {i} must be a dict with 'role' and 'content', got {message!r}.")
        if message["role"] not in ROLES:
            raise PromptError(f"Message {i} has role {message['role']!r}; use one of {', '.join(ROLES)}.")
        calls_only = message.get("tool_calls") and message.get("content") is None
        if not isinstance(message.get("content"), str) and not calls_only:
            raise PromptError(f"Message {i} content must be a string.")
    if messages[-1]["role"] != "tool" and not (messages[-1].get("content") or "").strip():
        raise PromptError("The last message is empty; say something.")
    return check_tool_messages(messages)


def prepare(prompt, options: GenerationOptions, tokenizer: Tokenizer, context_length: int | None,
            trim: bool = False) -> PreparedPrompt:
    """Validate `prompt` and fit it to the context: a chat may drop its oldest turns (`trim`,
    the system prompt kept); anything else that does not fit is a PromptError."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise PromptError("The prompt is empty; pass some text.")
        if options.apply_chat_template and tokenizer.chat_template:
            return prepare([{"role": "user", "content": prompt}], options, tokenizer, context_length, trim)
        return _fit(prompt, tokenizer.encode(prompt), options, context_length, text=prompt)
    if isinstance(prompt, (list, tuple, np.ndarray)) and len(prompt) and not isinstance(prompt[0], dict):
        ids = np.asarray(prompt)
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer) or (ids < 0).any():
            raise PromptError("Token ids must be a flat list of non-negative integers.")
        vocab = getattr(tokenizer, "vocab_size", None)
        if vocab and (ids >= vocab).any():  # genai would embed it as zeros and answer nonsense
            raise PromptError(f"Token id {int(ids.max())} is not in the model's vocabulary (ids 0 to {vocab - 1}); "
                              "encode the prompt with this model's tokenizer.")
        return _fit(ov.Tensor(ids.astype(np.int64).reshape(1, -1)), ids.tolist(), options, context_length)
    messages = check_messages(prompt)
    if not options.apply_chat_template:
        raise PromptError("Chat messages need the chat template; pass a plain string with apply_chat_template=False.")
    dropped = 0
    thinking = reasoning.thinking_of(tokenizer.chat_template)
    context = _template_context(options, thinking)
    while True:
        tools = plan_tools(messages, options, tokenizer)
        text = tokenizer.apply_chat_template(tools.messages, **({"tools": tools.tools} if tools.tools else {}),
                                             **({"extra_context": context} if context else {}))
        ids = tokenizer.encode(text, add_special_tokens=False)  # as genai feeds a templated chat
        first = 1 if messages[0]["role"] == "system" else 0
        fits = not context_length or len(ids) + options.max_new_tokens <= context_length
        if fits or not trim or len(messages) - first <= 1:
            break  # fits, or nothing left to drop: _fit clamps max_new_tokens or refuses
        dropped += _drop_oldest_exchange(messages, first)
    fitted = _fit(_history(tools.messages, tools.tools, context), ids, options, context_length, text=text, templated=True)
    return replace(fitted, messages=messages, dropped_messages=dropped, tool_format=tools.tool_format,
                   tool_grammar=tools.grammar, thinking=thinking,
                   thinking_start=reasoning.start_of(text, thinking) if thinking else reasoning.OFF)


def _template_context(options: GenerationOptions, thinking: reasoning.Thinking | None) -> dict:
    """The template's extra variables: the caller's, and `enable_thinking` when it asks."""
    context = dict(options.template_kwargs)
    if options.thinking is not None:
        context.setdefault("enable_thinking", options.thinking)
    if context.get("enable_thinking") is False and thinking and not thinking.can_turn_off:
        raise OptionsError("This model's chat template always thinks (it has no enable_thinking switch); "
                           "leave thinking on, or pick a model whose template can turn it off (Qwen 3's can).",
                           param="thinking")
    return context


def _format(kind: str, text: str) -> dict:
    """A constraint (StructuredOutputConfig field, text) as a structural-tag format."""
    if kind == "structural_tags_config":
        return json.loads(text)["format"]
    if kind == "json_schema":
        return structural_tags.json_schema(json.loads(text))
    if kind == "regex":
        return {"type": "regex", "pattern": text}
    return {"type": "grammar", "grammar": text}


def _drop_oldest_exchange(messages: list[dict], first: int) -> int:
    """Drop the oldest message after the system prompt, and whatever follows it until a user
    message leads again: strict templates want user, assistant, user... after the system prompt.
    The last message always stays."""
    dropped = 0
    while len(messages) - first > 1 and (dropped == 0 or messages[first]["role"] != "user"):
        del messages[first]
        dropped += 1
    return dropped


def _fit(inputs, ids: list[int], options: GenerationOptions, context_length: int | None,
         text: str | None = None, templated: bool = False) -> PreparedPrompt:
    prompt_tokens = len(ids)
    if context_length:
        room = context_length - prompt_tokens
        if room < 1:
            raise PromptError(
                f"The prompt is {prompt_tokens} tokens but the model's context holds {context_length}; "
                "shorten it (or start a new chat)."
            )
        options = replace(options, max_new_tokens=min(options.max_new_tokens, room))
    return PreparedPrompt(inputs, options, tuple(ids), text, templated)


def _history(messages: list[dict], tools: list[dict] | None, context: dict) -> ov_genai.ChatHistory:
    history = ov_genai.ChatHistory()
    for message in messages:
        history.append(message)
    if tools:
        history.set_tools(tools)  # LLMPipeline renders a ChatHistory with its tools, as counted above
    if context:
        history.set_extra_context(context)
    return history
