"""Encode and decode with the exported openvino-tokenizers models, compiled once with ov.Core.

For a .gguf file there are no tokenizer files: openvino_genai builds the tokenizer from the
GGUF itself, and this class uses it. Chat templates are rendered by openvino_genai's Jinja
engine, the same one LLMPipeline applies, so counts match what the pipeline sees.
"""

from __future__ import annotations

import functools
import threading

import numpy as np
import openvino_genai as ov_genai
import openvino_tokenizers  # noqa: F401  (registers the tokenizer operations with OpenVINO)

from .devices import core
from .errors import ModelError, PromptError, reason
from .model import ModelInfo


class Tokenizer:
    def __init__(self, info: ModelInfo, genai_tokenizer: ov_genai.Tokenizer):
        self._genai = genai_tokenizer
        self._encoder = self._decoder = None
        # One infer request per compiled model and calling thread (a request is not thread-safe),
        # reused: the text streamer decodes twice per generated token.
        self._requests = threading.local()
        if info.format == "openvino":
            try:
                self._encoder = core().compile_model(info.path / "openvino_tokenizer.xml", "CPU")
                self._decoder = core().compile_model(info.path / "openvino_detokenizer.xml", "CPU")
            except RuntimeError as error:
                raise ModelError(
                    f"Cannot compile the tokenizer files in {info.path}: {reason(error)}. "
                    "Re-export the model with a matching openvino-tokenizers."
                ) from None

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of `text`, with the special tokens the model's tokenizer adds (BOS...) unless
        `add_special_tokens=False` (how genai encodes a templated chat: the template writes them)."""
        if self._encoder is None or not add_special_tokens:  # genai's Tokenizer runs the same exported model
            return self._genai.encode(text, add_special_tokens=add_special_tokens).input_ids.data[0].tolist()
        outputs = self._request("encoder").infer([np.array([text])])
        return outputs["input_ids"][0].tolist()

    def decode(self, ids) -> str:
        """Text of `ids`, special tokens skipped."""
        ids = np.asarray(ids, dtype=np.int64).reshape(1, -1)
        if self._decoder is None:
            return self._genai.decode(ids.tolist())[0]
        return str(self._request("decoder").infer([ids])["string_output"][0])

    def _request(self, which: str):
        """This thread's infer request of the encoder or the decoder (the results are copied out
        before the next call on the thread reuses it)."""
        request = getattr(self._requests, which, None)
        if request is None:
            request = (self._encoder if which == "encoder" else self._decoder).create_infer_request()
            setattr(self._requests, which, request)
        return request

    def count(self, text: str, add_special_tokens: bool = True) -> int:
        return len(self.encode(text, add_special_tokens))

    @functools.cached_property
    def vocab_size(self) -> int:
        """Token ids run from 0 to vocab_size - 1."""
        # The highest id, not the count: get_vocab() maps text to id, and tokens that decode to the
        # same text (byte pieces of an SPM vocabulary) share one key (a Phi-3-shaped vocabulary of
        # 32,064 ids gave 395 keys). get_vocab_vector() fails on byte-level vocabularies.
        return max(self._genai.get_vocab().values(), default=-1) + 1

    @property
    def chat_template(self) -> str:
        return self._genai.chat_template

    def set_chat_template(self, template: str) -> None:
        """Render chats with `template` (Jinja) instead of the model's own, from now on."""
        self._genai.set_chat_template(template)

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True,
                            tools: list[dict] | None = None, extra_context: dict | None = None) -> str:
        """The prompt text the model sees for `messages` (and `tools`, OpenAI function definitions;
        `extra_context`: more template variables, e.g. enable_thinking)."""
        if not self.chat_template:
            raise PromptError("This model has no chat template; pass a plain prompt with apply_chat_template=False.")
        try:
            return self._genai.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tools=tools,
                                                   extra_context=extra_context or None)
        except RuntimeError as error:  # the template's own raise_exception(), or a Jinja error
            raise PromptError(f"The model's chat template refused these messages: {reason(error)}. "
                              "Check the roles and their order (most templates want user and assistant "
                              "turns to alternate after an optional system prompt).") from None

