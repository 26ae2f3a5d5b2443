"""The parts of a decode step, each measured on its own: studies/decode_profile.py drives them.

Every part is loaded once, then `part.run(ids, new_tokens)` generates `new_tokens` tokens
greedily after the prompt `ids` (EOS ignored) and returns its figures in ms per decode step:

    kernels      ov.Core compile of the IR and a stateful loop of InferRequest.infer() calls (one
                 token in, the KV cache in the model's state): the CPU plugin alone, no genai;
    layers       the same loop with PERF_COUNT: per-layer real time summed by layer type;
    genai-*      LLMPipeline.generate on the same ids: no streamer, a no-op token streamer
                 (StreamerBase), a no-op text callback (genai detokenizes every token for it);
                 TPOT from perf_metrics, its infer() share from raw_metrics.token_infer_durations;
    engine       ovchat.Engine.generate: the engine's own streamer, detokenizer and queue;
    llamacpp     llama-cpp-python on the GGUF, for reference.

genai overlaps the streamer with the next infer() (start_async, stream, wait: lm_encoding.cpp),
so on 2 cores the streamer's work competes with the plugin's threads rather than adding to TPOT.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from pathlib import Path

GENAI_ONLY = ("ATTENTION_BACKEND",)  # LLMPipeline properties ov.Core.compile_model rejects


def engine_properties(extra: dict | None = None) -> dict:
    """The engine's LoadOptions properties (LATENCY, one stream, its attention backend) + `extra`,
    with no compile cache: each lever's variant compiles its own model anyway."""
    from ovchat import engine
    props = engine.LoadOptions(cache_dir=False, warmup=False).to_properties()
    props.update(extra or {})
    return props


def _ms(values) -> float:
    return statistics.mean(values) if values else 0.0


class KernelLoop:
    """The IR compiled by ov.Core with the engine's properties, decoded by one InferRequest."""

    name = "kernels"
    perf_count = False

    def __init__(self, ir: str | Path, properties: dict):
        import openvino as ov
        props = {k: v for k, v in properties.items() if k not in GENAI_ONLY}
        if self.perf_count:
            props["PERF_COUNT"] = "YES"
        self.compiled = ov.Core().compile_model(Path(ir) / "openvino_model.xml", "CPU", props)
        self.request = self.compiled.create_infer_request()
        self.inputs = {i.get_any_name() for i in self.compiled.inputs}

    def _feed(self, ids: list[int], start: int):
        import numpy as np
        feed = {"input_ids": np.array([ids], dtype=np.int64),
                "attention_mask": np.ones((1, start + len(ids)), dtype=np.int64),
                "position_ids": np.arange(start, start + len(ids), dtype=np.int64)[None],
                "beam_idx": np.zeros(1, dtype=np.int32)}
        return {k: v for k, v in feed.items() if k in self.inputs}

    def _next_token(self) -> int:
        return int(self.request.get_tensor("logits").data[0, -1].argmax())

    def run(self, ids: list[int], new_tokens: int) -> dict:
        self.request.reset_state()
        self.request.infer(self._feed(ids, 0))
        token, infer_ms, argmax_ms, step_ms = self._next_token(), [], [], []
        for i in range(new_tokens - 1):
            begin = time.perf_counter()
            self.request.infer(self._feed([token], len(ids) + i))
            middle = time.perf_counter()
            token = self._next_token()
            end = time.perf_counter()
            infer_ms.append((middle - begin) * 1000)
            argmax_ms.append((end - middle) * 1000)
            step_ms.append((end - begin) * 1000)
            self.after_step()
        return {"tpot_ms": _ms(step_ms), "median_ms": statistics.median(step_ms), "infer_ms": _ms(infer_ms),
                "infer_median_ms": statistics.median(infer_ms), "argmax_ms": _ms(argmax_ms)}

    def after_step(self) -> None:
        pass


class LayerCounters(KernelLoop):
    """The kernel loop with PERF_COUNT=YES: per-layer real time summed by layer type in each step,
    then the median over steps (a step the scheduler preempted inflates one layer's time, not all
    of them); "nodes_ms" is the median step's sum over every layer, "lm_head_ms" the output layer's."""

    name = "layers"
    perf_count = True

    def run(self, ids: list[int], new_tokens: int) -> dict:
        self.per_step: list[dict[str, float]] = []
        figures = super().run(ids, new_tokens)
        types = {t for step in self.per_step for t in step}
        by_type = {t: statistics.median(step.get(t, 0.0) for step in self.per_step) for t in types}
        return dict(figures, nodes_ms=statistics.median(sum(s.values()) - s["lm_head"] for s in self.per_step),
                    lm_head_ms=statistics.median(s["lm_head"] for s in self.per_step),
                    by_type_ms=dict(sorted(((t, v) for t, v in by_type.items() if t != "lm_head"),
                                           key=lambda kv: -kv[1])))

    def after_step(self) -> None:
        step: dict[str, float] = defaultdict(float)
        for info in self.request.get_profiling_info():
            if info.status == info.Status.EXECUTED:
                ms = info.real_time.total_seconds() * 1000
                step[info.node_type] += ms
                if "lm_head" in info.node_name:
                    step["lm_head"] += ms
        self.per_step.append(step)


class Genai:
    """LLMPipeline with the engine's properties (+ a lever's) and one kind of streamer:
    "none", "tokens" (a StreamerBase whose write() returns RUNNING) or "text" (a callback
    taking text: genai wraps it in its TextStreamer, which detokenizes every token)."""

    def __init__(self, ir: str | Path, properties: dict, streamer: str = "tokens", name: str | None = None):
        import openvino_genai as ov_genai
        self.name = name or f"genai-{streamer}"
        self.pipe = ov_genai.LLMPipeline(str(ir), "CPU", **properties)
        self.streamer = {"none": None, "tokens": _TokenSink(), "text": _text_sink}[streamer]

    def run(self, ids: list[int], new_tokens: int) -> dict:
        import numpy as np
        import openvino as ov
        config = self.pipe.get_generation_config()
        config.max_new_tokens, config.ignore_eos, config.do_sample = new_tokens, True, False
        tensor = ov.Tensor(np.array([ids], dtype=np.int64))
        if self.streamer is None:
            perf = self.pipe.generate(tensor, config).perf_metrics
        else:
            perf = self.pipe.generate(tensor, config, self.streamer).perf_metrics
        raw = perf.raw_metrics
        infer = [d / 1000 for d in raw.token_infer_durations[1:]]     # microseconds; [0] is the prefill
        sampling = [d / 1000 for d in raw.sampling_durations[1:]]
        steps = [d / 1000 for d in raw.m_durations]                   # token to token, the prefill excluded
        return {"tpot_ms": perf.get_tpot().mean, "median_ms": statistics.median(steps), "infer_ms": _ms(infer),
                "infer_median_ms": statistics.median(infer), "sampling_ms": _ms(sampling)}


def _text_sink(text: str):
    import openvino_genai as ov_genai
    return ov_genai.StreamingStatus.RUNNING


def _TokenSink():
    import openvino_genai as ov_genai

    class TokenSink(ov_genai.StreamerBase):
        def write(self, token):
            return ov_genai.StreamingStatus.RUNNING

        def end(self):
            pass

    return TokenSink()


class EnginePart:
    """ovchat's Engine as shipped (its warm-up included), through the public API."""

    name = "engine"

    def __init__(self, ir: str | Path, properties: dict):
        from ovchat import engine
        extra = {k: v for k, v in properties.items() if k not in engine_properties()}
        self._engine = engine
        self.eng = engine.Engine.load(ir, cache_dir=False, **extra)

    def run(self, ids: list[int], new_tokens: int) -> dict:
        """TPOT from the result (genai's perf metrics, as the engine reports it); the median gap
        between text pieces as the caller receives them (a piece is one token's text, or a few
        tokens' when the detokenizer holds back an incomplete character)."""
        options = self._engine.GenerationOptions(max_new_tokens=new_tokens, ignore_eos=True)
        arrivals = []
        with self.eng.stream(ids, options) as stream:
            for _ in stream:
                arrivals.append(time.perf_counter())
        gaps = [(b - a) * 1000 for a, b in zip(arrivals, arrivals[1:])]
        return {"tpot_ms": stream.result.metrics.tpot_ms, "median_ms": statistics.median(gaps) if gaps else 0.0,
                "pieces": len(arrivals)}


class LlamaCpp:
    """llama-cpp-python on the GGUF, as `ovchat bench` runs it (benchmarks/backends.py)."""

    name = "llamacpp"

    def __init__(self, gguf: str | Path):
        from ovchat.benchmarks.backends import LlamaCppBackend, ModelFiles
        self.backend = LlamaCppBackend()
        self.backend.load(ModelFiles("m", gguf=str(gguf)), "CPU", "LATENCY", None)

    def run(self, ids: list[int], new_tokens: int) -> dict:
        llm = self.backend.llm
        llm.reset()
        times = []
        for _ in llm.generate(ids, temp=0.0, top_k=1, reset=True):
            times.append(time.perf_counter())
            if len(times) >= new_tokens:
                break
        steps = [(b - a) * 1000 for a, b in zip(times, times[1:])]
        return {"tpot_ms": _ms(steps), "median_ms": statistics.median(steps)}
