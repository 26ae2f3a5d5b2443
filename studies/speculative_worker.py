"""One backend of the speculative-decoding bench, loaded once in its own process.

The driver (speculative.py) starts `python -m studies.speculative_worker BACKEND MODEL GGUF THREADS`
from the checkout's root and sends its jobs through ovchat bench's child protocol
(ovchat.benchmarks.child: {"action": ..., "ids": [...], "n": N, ...}, one answer each). Every backend gets the same prompt token ids and decodes exactly N
tokens greedily (EOS ignored), so their decode speeds compare token for token. Times are wall
clock around the stream: TTFT to the first piece, TPOT over the rest.
"""

from __future__ import annotations

import re
import sys
import time

from ovchat.benchmarks.child import serve
from ovchat.engine.options import LoadOptions

# ovchat backends: Engine.load keyword arguments.
OVCHAT = {
    "ovchat": {},
    "ovchat-pa": {"ATTENTION_BACKEND": "PA"},
    "ovchat-lookup": {"prompt_lookup": True, "num_assistant_tokens": 5},
    "ovchat-lookup-k10": {"prompt_lookup": True, "num_assistant_tokens": 10},
}
_LOOKUP = re.compile(r"ovchat-lookup-k(\d+)(?:-n(\d+))?")


def ovchat_kwargs(name: str) -> dict | None:
    """Engine.load keyword arguments for an ovchat backend name, None if it is not one.

    Besides the names in OVCHAT, `ovchat-lookup-k<K>` and `ovchat-lookup-k<K>-n<N>` are prompt
    lookup with K guesses per pass and n-grams of at most N tokens (default: the engine's)."""
    if name in OVCHAT:
        return dict(OVCHAT[name])
    match = _LOOKUP.fullmatch(name)
    if not match:
        return None
    kwargs = {"prompt_lookup": True, "num_assistant_tokens": int(match[1])}
    if match[2]:
        kwargs["max_ngram_size"] = int(match[2])
    return kwargs


def is_ovchat(name: str) -> bool:
    return ovchat_kwargs(name) is not None


# llama-cpp-python: guesses per pass of LlamaPromptLookupDecoding (None: plain decoding). Its
# README advises 10 on GPU and 2 on CPU; both are measured and the faster one is "llama.cpp's best".
LLAMA = {"llamacpp": None, "llamacpp-lookup-k2": 2, "llamacpp-lookup-k10": 10}


class OvchatBackend:
    def __init__(self, name: str, model: str):
        from ovchat.engine import Engine
        self.kwargs = ovchat_kwargs(name)
        self.engine = Engine.load(model, **self.kwargs)
        self.model = model

    def run(self, job: dict) -> dict:
        from ovchat.engine import GenerationOptions
        options = GenerationOptions(max_new_tokens=job["n"], ignore_eos=job.get("schema") is None,
                                    json_schema=job.get("schema"))
        start = time.perf_counter()
        first = None
        with self.engine.stream(job.get("text") or job["ids"], options) as stream:
            for _ in stream:
                first = first or time.perf_counter()
        end = time.perf_counter()
        result = stream.result
        return _timing(start, first or end, end, result.output_tokens, text=result.text)

    def passes(self, job: dict) -> dict:
        """Model passes for this job, counted on a raw LLMPipeline with the same settings (greedy:
        the same tokens as the engine's run; the engine does not report passes)."""
        import openvino as ov
        import numpy as np
        import openvino_genai as ov_genai

        class Counter(ov_genai.StreamerBase):
            def __init__(self):
                super().__init__()
                self.passes = self.tokens = 0

            def write(self, token):
                self.passes += 1
                self.tokens += len(token) if isinstance(token, list) else 1
                return ov_genai.StreamingStatus.RUNNING

            def end(self):
                pass

        if not self.kwargs.get("prompt_lookup"):
            return {"passes": None}
        if not hasattr(self, "raw"):
            self.raw = ov_genai.LLMPipeline(self.model, "CPU", prompt_lookup=True, ATTENTION_BACKEND="PA")
        config = self.raw.get_generation_config()
        config.max_new_tokens, config.ignore_eos = job["n"], True
        config.num_assistant_tokens = self.kwargs["num_assistant_tokens"]
        config.max_ngram_size = self.kwargs.get("max_ngram_size", LoadOptions.max_ngram_size)  # as the engine runs
        counter = Counter()
        self.raw.generate(ov.Tensor(np.array([job["ids"]], dtype=np.int64)), config, counter)
        return {"passes": counter.passes - 1, "decoded": counter.tokens - 1}  # the prefill's token is not a decode pass

    def compile_ms(self, job: dict) -> dict:
        """The engine's up-front compile check of a schema it has not seen (structured.py)."""
        from ovchat.engine import GenerationOptions
        from ovchat.engine.structured import StructureChecker
        checker = StructureChecker(self.engine.tokenizer._genai)
        checker.check(GenerationOptions(json_schema={"type": "object", "properties": {"warm": {"type": "string"}}}))
        return {"compile_ms": checker.check(GenerationOptions(json_schema=job["schema"]))}


class LlamaBackend:
    def __init__(self, name: str, gguf: str, threads: int):
        from llama_cpp import Llama
        from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

        guesses = LLAMA[name]
        self.draft = None
        if guesses:
            self.draft = _CountingDraft(LlamaPromptLookupDecoding(num_pred_tokens=guesses))
        # logits_all with a draft: llama-cpp-python 0.3.36 sizes its score buffer for n_batch rows
        # otherwise, and a prompt longer than n_batch then fails in eval() (measured).
        self.llm = Llama(model_path=gguf, n_ctx=4096, n_batch=512, verbose=False, draft_model=self.draft,
                         logits_all=bool(self.draft),
                         n_threads=threads)

    def run(self, job: dict) -> dict:
        self.llm.reset()  # no prefix reuse from the previous repetition
        if self.draft:
            self.draft.reset()
        out, start = [], time.perf_counter()
        first = start
        for token in self.llm.generate(job["ids"], temp=0.0, top_k=1, reset=True):
            if not out:
                first = time.perf_counter()
            out.append(token)
            if len(out) >= job["n"]:
                break
        end = time.perf_counter()
        timing = _timing(start, first, end, len(out), text=self.llm.detokenize(out).decode(errors="replace"))
        if self.draft:  # generate() calls the draft once before each model pass that follows the prefill
            timing.update(passes=self.draft.calls, decoded=len(out) - 1)
        return timing


class _CountingDraft:
    def __init__(self, draft):
        self.inner = draft
        self.reset()

    def reset(self):
        self.calls = self.proposed = 0

    def __call__(self, input_ids, **kwargs):
        guesses = self.inner(input_ids, **kwargs)
        self.calls += 1
        self.proposed += len(guesses)
        return guesses


def _timing(start: float, first: float, end: float, tokens: int, text: str) -> dict:
    tpot = (end - first) * 1000 / (tokens - 1) if tokens > 1 else 0.0
    return {"tokens": tokens, "ttft_ms": (first - start) * 1000, "tpot_ms": tpot,
            "tokens_per_s": 1000 / tpot if tpot else 0.0, "text": text}


def main() -> int:
    name, model, gguf, llama_threads = sys.argv[1:5]
    backend = OvchatBackend(name, model) if is_ovchat(name) else LlamaBackend(name, gguf, int(llama_threads))

    def handle(job: dict) -> dict:
        if job.get("action") == "ready":
            return {"ready": name}
        return getattr(backend, job.get("action", "run"))(job)

    return serve(handle)


if __name__ == "__main__":
    sys.exit(main())
