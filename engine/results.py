"""Results as frozen dataclasses, units in the field names, filled from LLMPipeline's perf metrics."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace

from .tool_calls import ToolCall


@dataclass(frozen=True)
class Metrics:
    ttft_ms: float
    tpot_ms: float
    tokens_per_s: float
    generate_ms: float

    @classmethod
    def timed(cls, started: float, first_token_at: float | None, tokens: int) -> "Metrics":
        """Timed by the caller (perf_counter seconds), up to now: where genai's perf metrics
        don't apply (a batching request, a cancelled stream). No first token: TTFT is the wait so far."""
        now = time.perf_counter()
        first = first_token_at or now
        tpot = (now - first) * 1000 / (tokens - 1) if first_token_at and tokens > 1 else 0.0
        return cls(ttft_ms=(first - started) * 1000, tpot_ms=tpot, tokens_per_s=1000 / tpot if tpot else 0.0,
                   generate_ms=(now - started) * 1000)

    @classmethod
    def from_perf(cls, perf) -> "Metrics":
        return cls(
            ttft_ms=perf.get_ttft().mean,
            tpot_ms=perf.get_tpot().mean,
            tokens_per_s=perf.get_throughput().mean,
            generate_ms=perf.get_generate_duration().mean,
        )


@dataclass(frozen=True)
class LoadMetrics:
    load_ms: float     # import of the files + compile, as the caller waits for it
    warmup_ms: float   # the first inference, paid at load so the first user call is not slower
    released_mb: float  # mapped weight pages given back after the warm-up (the plugin keeps its own copy)


@dataclass(frozen=True)
class GeneratedToken:
    """One generated token (with GenerationOptions(logprobs=True)): its id, its own text (the
    answer's text is these joined) and its natural-log probability under the model's raw
    distribution, as genai's sampler computed it when choosing it."""
    id: int
    text: str
    logprob: float


@dataclass(frozen=True)
class GenerationResult:
    text: str
    input_tokens: int   # prompt tokens fed this call: a chat turn that reuses the KV cache counts its new ones
    output_tokens: int
    finish_reason: str  # "stop" (EOS or stop string), "length" (max_new_tokens), "tool_calls" or "cancelled"
    metrics: Metrics
    dropped_messages: int = 0  # oldest chat messages left out to fit the context window
    # The calls the answer made when tools were offered; `text` then holds what it said outside them.
    tool_calls: tuple[ToolCall, ...] = ()
    tokens: tuple[GeneratedToken, ...] = ()  # every generated token, with GenerationOptions(logprobs=True)
    # A thinking model's reasoning, read apart from `text` (reasoning.py), and the tokens it took.
    reasoning: str = ""
    reasoning_tokens: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    def with_reasoning(self, reasoning: str, text: str, reasoning_tokens: int) -> "GenerationResult":
        """This result once a thinking was read apart from its answer (`text`)."""
        return replace(self, text=text, reasoning=reasoning, reasoning_tokens=reasoning_tokens)

    def with_calls(self, text: str, tool_calls: tuple[ToolCall, ...], finish_reason: str) -> "GenerationResult":
        """This result once its answer was read into what it said (`text`) and the calls it made."""
        return replace(self, text=text, tool_calls=tool_calls, finish_reason=finish_reason)
