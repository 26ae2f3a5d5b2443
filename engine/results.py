"""Results as frozen dataclasses, units in the field names, filled from LLMPipeline's perf metrics."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Metrics:
    ttft_ms: float
    tpot_ms: float
    tokens_per_s: float
    generate_ms: float

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
class GenerationResult:
    text: str
    input_tokens: int   # prompt tokens fed this call: a chat turn that reuses the KV cache counts its new ones
    output_tokens: int
    finish_reason: str  # "stop" (EOS or stop string), "length" (max_new_tokens) or "cancelled"
    metrics: Metrics
    dropped_messages: int = 0  # oldest chat messages left out to fit the context window

    def to_dict(self) -> dict:
        return asdict(self)
