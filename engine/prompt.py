"""Turn what the caller passes (text, chat messages or token ids) into LLMPipeline input,
fitted to the model's context window."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import openvino as ov
import openvino_genai as ov_genai

from .errors import PromptError
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

    @property
    def input_tokens(self) -> int:
        return len(self.ids)

    @property
    def structure(self) -> tuple[str, str] | None:
        """The constraint generation compiles: the options' own, or the tools' grammar."""
        if self.tool_grammar:
            return ("structural_tags_config", self.tool_grammar)
        return self.options.structure


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
    while True:
        tools = plan_tools(messages, options, tokenizer)
        text = tokenizer.apply_chat_template(tools.messages, **({"tools": tools.tools} if tools.tools else {}))
        ids = tokenizer.encode(text, add_special_tokens=False)  # as genai feeds a templated chat
        first = 1 if messages[0]["role"] == "system" else 0
        fits = not context_length or len(ids) + options.max_new_tokens <= context_length
        if fits or not trim or len(messages) - first <= 1:
            break  # fits, or nothing left to drop: _fit clamps max_new_tokens or refuses
        dropped += _drop_oldest_exchange(messages, first)
    fitted = _fit(_history(tools.messages, tools.tools), ids, options, context_length, text=text, templated=True)
    return replace(fitted, messages=messages, dropped_messages=dropped, tool_format=tools.tool_format,
                   tool_grammar=tools.grammar)


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


def _history(messages: list[dict], tools: list[dict] | None) -> ov_genai.ChatHistory:
    history = ov_genai.ChatHistory()
    for message in messages:
        history.append(message)
    if tools:
        history.set_tools(tools)  # LLMPipeline renders a ChatHistory with its tools, as counted above
    return history
