"""A chat session: history with a system prompt, one turn at a time, streamed or not.

Each turn sends the whole history. In the single-stream mode it goes as an openvino_genai
ChatHistory, and LLMPipeline reuses the KV cache of the prefix it has already computed; in the
batching mode the PagedAttention prefix cache does the same. Either way a turn costs its new
tokens, and sessions taking turns on one engine each get their own answers.
When the history outgrows the context, the oldest turns are dropped (the system prompt stays)
and the turn's result says how many messages went.

With tools (GenerationOptions(tools=...)), a turn may end in calls (`result.tool_calls`): run
them, `add_tool_result(call.id, output)` for each, then `send()` with no text for the answer.
"""

from __future__ import annotations

from .errors import BusyError, PromptError
from .options import GenerationOptions
from .prompt import PreparedPrompt, prepare
from .results import GenerationResult
from .stream import TextStream


class ChatSession:
    def __init__(self, engine, system_prompt: str | None = None, options: GenerationOptions | None = None):
        self._engine = engine
        self.system_prompt = system_prompt
        self.options = options or GenerationOptions()
        self._messages: list[dict] = []
        self._open: TextStream | None = None
        self.reset()

    @property
    def messages(self) -> list[dict]:
        """A copy of the history, system prompt first."""
        return [dict(m) for m in self._messages]

    def reset(self) -> None:
        """Forget every turn; keep the system prompt."""
        self._messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []

    def add_tool_result(self, call_id: str, content: str) -> None:
        """The output of a tool call the last answer made; `send()` (no text) then continues."""
        pending = {c["id"] for m in self._messages if m.get("tool_calls") for c in m["tool_calls"]}
        if call_id not in pending:
            raise PromptError(f"No tool call {call_id!r} in this chat; answer the ids of the last result's tool_calls.")
        self._messages.append({"role": "tool", "tool_call_id": call_id, "content": str(content)})

    def send(self, text: str | None = None, options: GenerationOptions | None = None) -> GenerationResult:
        """One turn, answered in full (no text: the answer after tool results)."""
        with self.stream(text, options) as stream:
            for _ in stream:
                pass
        return stream.result

    def stream(self, text: str | None = None, options: GenerationOptions | None = None) -> TextStream:
        """One turn as a TextStream. Closing it early keeps the partial answer in the history."""
        continuing = text is None and self._messages and self._messages[-1]["role"] == "tool"
        if not continuing and (not isinstance(text, str) or not text.strip()):
            raise PromptError("The message is empty; say something (or add tool results first).")
        if self._open is not None and not self._open.done:
            raise BusyError("This chat's previous answer is still streaming; finish or close it first.")
        turn = self._messages + ([] if continuing else [{"role": "user", "content": text}])
        prepared = prepare(turn, options or self.options, self._engine.tokenizer, self._engine.info.context_length,
                           trim=True)
        self._open = self._engine.submit(prepared)
        self._open.add_done_callback(lambda result: self._record(prepared, result))
        return self._open

    def _record(self, prepared: PreparedPrompt, result: GenerationResult) -> None:
        if result.tool_calls:
            self._messages = prepared.messages + [{"role": "assistant", "content": result.text,
                                                   "tool_calls": [c.to_template() for c in result.tool_calls]}]
        elif result.text:
            self._messages = prepared.messages + [{"role": "assistant", "content": result.text}]
        elif prepared.messages[-1]["role"] == "user":  # stopped before a word: as if the turn never happened
            self._messages = prepared.messages[:-1]
        else:  # after tool results: keep them
            self._messages = prepared.messages
