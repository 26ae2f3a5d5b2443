"""A chat session: history with a system prompt, one turn at a time, streamed or not.

Each turn sends the whole history as an openvino_genai ChatHistory; LLMPipeline recognises
the prefix it has already computed and reuses its KV cache, so a turn costs its new tokens.
When the history outgrows the context, the oldest turns are dropped (the system prompt stays)
and the turn's result says how many messages went.
"""

from __future__ import annotations

from typing import Generator

from .errors import PromptError
from .options import GenerationOptions
from .prompt import prepare
from .results import GenerationResult


class ChatSession:
    def __init__(self, engine, system_prompt: str | None = None, options: GenerationOptions | None = None):
        self._engine = engine
        self.system_prompt = system_prompt
        self.options = options or GenerationOptions()
        self._messages: list[dict] = []
        self.reset()

    @property
    def messages(self) -> list[dict]:
        """A copy of the history, system prompt first."""
        return [dict(m) for m in self._messages]

    def reset(self) -> None:
        """Forget every turn; keep the system prompt."""
        self._messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []

    def send(self, text: str, options: GenerationOptions | None = None) -> GenerationResult:
        """One turn, answered in full."""
        stream = self.stream(text, options)
        for _ in stream:
            pass
        return self._engine.last_result

    def stream(self, text: str, options: GenerationOptions | None = None) -> Generator[str, None, GenerationResult]:
        """One turn as text pieces. Stopping early keeps the partial answer in the history."""
        if not isinstance(text, str) or not text.strip():
            raise PromptError("The message is empty; say something.")
        options = options or self.options
        turn = self._messages + [{"role": "user", "content": text}]
        prepared = prepare(turn, options, self._engine.tokenizer, self._engine.info.context_length, trim=True)
        return self._turn(prepared)

    def _turn(self, prepared) -> Generator[str, None, GenerationResult]:
        pieces = []
        try:
            return (yield from self._engine._run(prepared, pieces))
        finally:
            if pieces:
                self._messages = prepared.messages + [{"role": "assistant", "content": "".join(pieces)}]
            else:  # stopped before a word: as if the turn never happened (older turns may be trimmed)
                self._messages = prepared.messages[:-1]

