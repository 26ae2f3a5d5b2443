"""One small adapter per backend, all driven the same way by benchmarks/worker.py.

    backend.load(files, device, hint, cache_dir) -> load_ms
    backend.generate_ids(ids, n)                 -> Sample (greedy, EOS ignored, exactly n new tokens)
    backend.chat_turn(text, n)                   -> ttft_ms (history kept by the backend's own chat path)
    backend.chat_unavailable()                   -> why chat_turn can't run on this model (a base model
                                                    with no chat template), or None
    backend.chat_reset()                         -> a new conversation
    backend.generate_concurrent(batch, n)        -> per-request latencies in ms

Backends: "ovchat" (our engine), "genai" (raw openvino_genai.LLMPipeline, the same properties),
"genai-pa" (the same on LLMPipeline's default attention backend, PagedAttention; chat only),
"optimum" (the seed's path: optimum-intel OVModelForCausalLM + a transformers tokenizer),
"llamacpp" (llama-cpp-python on the GGUF). Heavy imports happen inside the adapters: the
parent process only calls `unavailable()`, which looks packages up without importing them.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from dataclasses import dataclass

# genai-pa: chat only; llama-server, ovchat-single, ovchat-process: the server scenario; ovchat-client: coldstart
BACKENDS = ("ovchat", "genai", "optimum", "llamacpp", "genai-pa", "llama-server", "ovchat-single", "ovchat-process",
            "ovchat-client")
MAIN_BACKENDS = BACKENDS[:4]  # what every scenario measures; genai-pa only where the backends differ
_PACKAGES = {"ovchat": "openvino_genai", "genai": "openvino_genai", "genai-pa": "openvino_genai",
             "optimum": "optimum.intel", "llamacpp": "llama_cpp", "llama-server": "llama_cpp",
             "ovchat-single": "openvino_genai", "ovchat-process": "openvino_genai", "ovchat-client": "openvino_genai"}
_INSTALL = {"optimum": "install the export extra (tools/install.sh)",
            "llamacpp": "run `bash tools/install.sh full` (compiles llama.cpp, ~7 min on 2 cores, progress shown)"}


@dataclass(frozen=True)
class ModelFiles:
    """One model in the formats the backends read: an exported IR folder and/or a GGUF file."""
    name: str
    ir: str | None = None
    gguf: str | None = None


NO_TEMPLATE = "the model has no chat template (a base model): the chat scenario measures templated turns"


@dataclass(frozen=True)
class Sample:
    ttft_ms: float
    tpot_ms: float
    tokens_per_s: float
    new_tokens: int


def unavailable(backend: str, files: ModelFiles, device: str) -> str | None:
    """Why `backend` can't run `files` on `device` here, or None if it can."""
    package = _PACKAGES[backend]
    try:
        found = importlib.util.find_spec(package) is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        return f"{package} is not installed: {_INSTALL.get(backend, 'pip install -e .')}"
    if backend in ("llamacpp", "llama-server"):
        if device != "CPU":
            return "llama-cpp-python is built for CPU here (no GPU backend compiled in)"
        return None if files.gguf else f"no GGUF file for model {files.name}"
    if backend == "optimum" and not files.ir:
        return f"optimum-intel reads exported IR folders only; model {files.name} has none"
    return None if (files.ir or files.gguf) else f"no model files for {files.name}"


def create(backend: str):
    return {"ovchat": OvchatBackend, "genai": GenaiBackend, "genai-pa": GenaiPagedBackend,
            "optimum": OptimumBackend, "llamacpp": LlamaCppBackend}[backend]()


def _engine_properties(hint: str, cache_dir: str | None) -> dict:
    """Exactly what the engine sends (its LoadOptions, defaults such as ATTENTION_BACKEND
    included), so "genai" measures the same compile as "ovchat" when the engine's defaults change."""
    from .. import engine
    return engine.LoadOptions(performance_hint=hint, num_streams=1 if hint == "LATENCY" else None,
                              cache_dir=cache_dir or False, warmup=False).to_properties()


def _seed_properties(hint: str, cache_dir: str | None) -> dict:
    """The seed's ov_config for OVModelForCausalLM (plain ov.Core properties, no LLMPipeline ones)."""
    props = {"PERFORMANCE_HINT": hint}
    if hint == "LATENCY":
        props["NUM_STREAMS"] = "1"
    props["CACHE_DIR"] = cache_dir or ""   # "" disables it (optimum would default to the model dir)
    return props


def _sample(start: float, first: float, end: float, n: int) -> Sample:
    tpot = (end - first) * 1000 / max(n - 1, 1)
    return Sample((first - start) * 1000, tpot, 1000 / tpot if tpot else 0.0, n)


def _threaded_latencies(call, batch) -> list[float]:
    latencies = [0.0] * len(batch)

    def run(i):
        start = time.perf_counter()
        call(batch[i])
        latencies[i] = (time.perf_counter() - start) * 1000

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(batch))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies


class OvchatBackend:
    """Our engine, through its public API only, as shipped: its own warm-up (and the memory it
    releases after it, issue 6) included; `warmup_ms` is reported apart from the load."""

    def load(self, files: ModelFiles, device: str, hint: str, cache_dir: str | None) -> float:
        from .. import engine
        self._engine_mod = engine
        self.eng = engine.Engine.load(files.ir or files.gguf, device=device, performance_hint=hint,
                                      num_streams=1 if hint == "LATENCY" else None, cache_dir=cache_dir or False)
        self.warmup_ms = self.eng.load_metrics.warmup_ms
        return self.eng.load_metrics.load_ms

    def _options(self, n: int):
        return self._engine_mod.GenerationOptions(max_new_tokens=n, ignore_eos=True)

    def generate_ids(self, ids: list[int], n: int) -> Sample:
        result = self.eng.generate(ids, self._options(n))
        m = result.metrics
        return Sample(m.ttft_ms, m.tpot_ms, m.tokens_per_s, result.output_tokens)

    def chat_turn(self, text: str, n: int) -> float:
        if not hasattr(self, "session"):
            self.session = self.eng.chat()
        return self.session.send(text, self._options(n)).metrics.ttft_ms

    def chat_reset(self) -> None:
        self.session = self.eng.chat()

    def chat_unavailable(self) -> str | None:
        return None if self.eng.tokenizer.chat_template else NO_TEMPLATE

    def generate_concurrent(self, batch: list[list[int]], n: int) -> list[float]:
        # The engine serves one generation at a time; concurrent callers queue (engine.py).
        return _threaded_latencies(lambda ids: self.eng.generate(ids, self._options(n)), batch)


class GenaiBackend:
    """openvino_genai.LLMPipeline used directly, with the engine's compile properties, streaming
    to a no-op callback as the engine (and any chat app) does. Without a streamer, genai 2026.4's
    generate() decodes ~1.5x slower on this 2-core machine (128 tokens: 3.3 s vs 2.2 s, measured
    alternately in one process), which is a property of that call, not an overhead of ours."""

    def load(self, files: ModelFiles, device: str, hint: str, cache_dir: str | None) -> float:
        import openvino_genai as ov_genai
        start = time.perf_counter()
        self.pipe = ov_genai.LLMPipeline(files.ir or files.gguf, device, **self.properties(hint, cache_dir))
        return (time.perf_counter() - start) * 1000

    def properties(self, hint: str, cache_dir: str | None) -> dict:
        return _engine_properties(hint, cache_dir)

    def _config(self, n: int):
        config = self.pipe.get_generation_config()
        config.max_new_tokens, config.ignore_eos, config.do_sample = n, True, False
        return config

    def _tensor(self, rows: list[list[int]]):
        import numpy as np
        import openvino as ov
        return ov.Tensor(np.array(rows, dtype=np.int64))

    @staticmethod
    def _streamer(piece: str):
        import openvino_genai as ov_genai
        return ov_genai.StreamingStatus.RUNNING

    def generate_ids(self, ids: list[int], n: int) -> Sample:
        perf = self.pipe.generate(self._tensor([ids]), self._config(n), self._streamer).perf_metrics
        return Sample(perf.get_ttft().mean, perf.get_tpot().mean, perf.get_throughput().mean,
                      perf.get_num_generated_tokens())

    def chat_turn(self, text: str, n: int) -> float:
        if not getattr(self, "chatting", False):
            self.pipe.start_chat()
            self.chatting = True
        # A list in, DecodedResults out (a bare str returns a bare str, without perf metrics).
        return self.pipe.generate([text], self._config(n), self._streamer).perf_metrics.get_ttft().mean

    def chat_reset(self) -> None:
        if getattr(self, "chatting", False):
            self.pipe.finish_chat()
        self.chatting = False

    def chat_unavailable(self) -> str | None:
        return None if self.pipe.get_tokenizer().chat_template else NO_TEMPLATE

    def generate_concurrent(self, batch: list[list[int]], n: int) -> list[float]:
        # LLMPipeline is not re-entrant: its way to serve several prompts at once is one batch.
        import openvino_genai as ov_genai
        inputs = ov_genai.TokenizedInputs(self._tensor(batch), self._tensor([[1] * len(batch[0])] * len(batch)))
        start = time.perf_counter()
        self.pipe.generate(inputs, self._config(n))
        return [(time.perf_counter() - start) * 1000] * len(batch)


class _FirstTokenTimer:
    """A transformers streamer that timestamps the first generated token and the last one."""

    def __init__(self):
        self.calls = 0
        self.first = self.last = 0.0

    def put(self, value):
        self.calls += 1
        if self.calls == 2:  # the first put() is the prompt itself
            self.first = time.perf_counter()
        self.last = time.perf_counter()

    def end(self):
        self.last = time.perf_counter()


class GenaiPagedBackend(GenaiBackend):
    """The same LLMPipeline on its own default attention backend (PagedAttention) instead of the
    engine's SDPA: the chat scenario shows what that choice costs or buys as history grows."""

    def properties(self, hint: str, cache_dir: str | None) -> dict:
        return dict(_engine_properties(hint, cache_dir), ATTENTION_BACKEND="PA")


class OptimumBackend:
    """The seed's path: optimum-intel OVModelForCausalLM and transformers' AutoTokenizer."""

    def load(self, files: ModelFiles, device: str, hint: str, cache_dir: str | None) -> float:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from optimum.intel import OVModelForCausalLM
        from transformers import AutoTokenizer
        start = time.perf_counter()
        self.tokenizer = AutoTokenizer.from_pretrained(files.ir)
        self.model = OVModelForCausalLM.from_pretrained(files.ir, device=device,
                                                        ov_config=_seed_properties(hint, cache_dir))
        return (time.perf_counter() - start) * 1000

    def _generate(self, input_ids, n: int):
        import torch
        timer = _FirstTokenTimer()
        start = time.perf_counter()
        out = self.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                  max_new_tokens=n, min_new_tokens=n, do_sample=False, streamer=timer,
                                  pad_token_id=self.tokenizer.pad_token_id or 0)
        return out, _sample(start, timer.first, timer.last, n)

    def generate_ids(self, ids: list[int], n: int) -> Sample:
        import torch
        return self._generate(torch.tensor([ids], dtype=torch.int64), n)[1]

    def chat_turn(self, text: str, n: int) -> float:
        self.history = getattr(self, "history", []) + [{"role": "user", "content": text}]
        input_ids = self.tokenizer.apply_chat_template(self.history, add_generation_prompt=True,
                                                       return_tensors="pt", return_dict=True)["input_ids"]
        out, sample = self._generate(input_ids, n)
        reply = self.tokenizer.decode(out[0, input_ids.shape[1]:], skip_special_tokens=True)
        self.history.append({"role": "assistant", "content": reply})
        return sample.ttft_ms

    def chat_reset(self) -> None:
        self.history = []

    def chat_unavailable(self) -> str | None:
        return None if self.tokenizer.chat_template else NO_TEMPLATE

    def generate_concurrent(self, batch: list[list[int]], n: int) -> list[float]:
        import torch
        start = time.perf_counter()
        self._generate(torch.tensor(batch, dtype=torch.int64), n)
        return [(time.perf_counter() - start) * 1000] * len(batch)


class LlamaCppBackend:
    """llama-cpp-python on the GGUF; greedy; prefix KV reuse between chat turns is its own."""

    def load(self, files: ModelFiles, device: str, hint: str, cache_dir: str | None) -> float:
        import psutil
        from llama_cpp import Llama
        start = time.perf_counter()
        self.llm = Llama(model_path=files.gguf, n_ctx=4096, n_batch=512, verbose=False,
                         n_threads=psutil.cpu_count(logical=False) or os.cpu_count())
        return (time.perf_counter() - start) * 1000

    def _run(self, ids: list[int], n: int, reset: bool) -> tuple[list[int], Sample]:
        if reset:
            self.llm.reset()
        out: list[int] = []
        start = time.perf_counter()
        first = start
        for token in self.llm.generate(ids, temp=0.0, top_k=1, reset=True):
            if not out:
                first = time.perf_counter()
            out.append(token)
            if len(out) >= n:
                break
        return out, _sample(start, first, time.perf_counter(), n)

    def generate_ids(self, ids: list[int], n: int) -> Sample:
        return self._run(ids, n, reset=True)[1]

    def chat_turn(self, text: str, n: int) -> float:
        import jinja2
        self.history = getattr(self, "history", []) + [{"role": "user", "content": text}]
        template = jinja2.Template(self.llm.metadata.get("tokenizer.chat_template", "{% for m in messages %}"
                                                         "{{ m['content'] }}\n{% endfor %}"))
        prompt = template.render(messages=self.history, add_generation_prompt=True, bos_token="", eos_token="")
        ids = self.llm.tokenize(prompt.encode(), add_bos=True, special=True)
        out, sample = self._run(ids, n, reset=False)  # keeps the KV prefix, as its chat path does
        reply = self.llm.detokenize(out).decode(errors="replace")
        self.history.append({"role": "assistant", "content": reply})
        return sample.ttft_ms

    def chat_reset(self) -> None:
        self.history = []

    def chat_unavailable(self) -> str | None:
        return None  # a GGUF without a template chats in plain turns (chat_turn's fallback)

    def generate_concurrent(self, batch, n):
        raise NotImplementedError("llama-cpp-python serves one sequence per context")
