"""The Engine: load a model once, then generate, stream or chat with it.

Everything runs through openvino_genai.LLMPipeline with ov.Core compile properties; text goes
in and out through the model's own openvino-tokenizers models. One engine serves one
generation at a time: concurrent callers wait their turn (LLMPipeline is not re-entrant).
"""

from __future__ import annotations

import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Generator

import openvino_genai as ov_genai

from .devices import check_device
from .errors import BusyError, ModelError
from .memory import releasing_mapped_weights
from .model import ModelInfo, resolve
from .options import GenerationOptions, LoadOptions
from .prompt import PreparedPrompt, prepare
from .results import GenerationResult, LoadMetrics, Metrics
from .streaming import iterate_pieces
from .tokenizer import Tokenizer, _first_line


WARMUP_PROMPT = "The quick brown fox jumps over the lazy dog, then rests by the river until noon."


class Engine:
    """A loaded model. Make one with `Engine.load(...)`."""

    def __init__(self, pipeline: ov_genai.LLMPipeline, info: ModelInfo, load_options: LoadOptions):
        self._pipeline = pipeline
        self.info = info
        self.load_options = load_options
        self.tokenizer = Tokenizer(info, pipeline.get_tokenizer())
        if info.eos_token_ids:  # a list in generation_config.json: Phi-3 ends turns with <|end|>
            config = pipeline.get_generation_config()
            config.stop_token_ids = set(config.stop_token_ids) | set(info.eos_token_ids)
            pipeline.set_generation_config(config)
        self._chat_mode: bool | None = None  # was the last call a ChatHistory? (see _run)
        self._lock = threading.Lock()
        self._owner: int | None = None
        self.load_metrics = LoadMetrics(load_ms=0.0, warmup_ms=0.0, released_mb=0.0)
        self.last_result: GenerationResult | None = None

    @classmethod
    def load(cls, model: str | Path | None = None, device: str = "CPU", performance_hint: str | None = "LATENCY",
             num_streams: int | None = 1, cache_dir: str | Path | bool = True, warmup: bool = True,
             **ov_properties) -> "Engine":
        """Load `model` (an exported folder, a .gguf file, or None for the default model) on `device`.

        `performance_hint`, `num_streams` and `cache_dir` are the seed's ov.Core compile
        properties; `cache_dir=True` (the default) keeps compiled models in ovchat's cache
        (`engine.paths.compile_cache_dir()`), `False` turns caching off. Any other OpenVINO or
        LLMPipeline property passes through `ov_properties` (e.g. KV_CACHE_PRECISION="u8",
        ATTENTION_BACKEND="PA"; the engine uses SDPA on CPU and GPU, see options.py).
        `warmup` runs a short inference now, so the first real call is as fast as the next
        ones, and releases the mapped weight pages it made redundant (see memory.py).
        """
        info = resolve(model)
        options = LoadOptions(check_device(device), performance_hint, num_streams, cache_dir, warmup, ov_properties)
        start = time.perf_counter()
        try:
            pipeline = ov_genai.LLMPipeline(str(info.path), options.device, **options.to_properties())
        except RuntimeError as error:
            raise ModelError(
                f"OpenVINO could not load {info.path} on {options.device}: {_first_line(error)}. "
                "Check the files are complete (re-export if in doubt) and the properties are valid for this device."
            ) from None
        engine = cls(pipeline, info, options)
        load_ms = (time.perf_counter() - start) * 1000
        warmup_ms, released = engine._warm_up([info.path, options.compile_cache]) if warmup else (0.0, 0)
        engine.load_metrics = LoadMetrics(load_ms, warmup_ms, released_mb=released / 2**20)
        return engine

    def generate(self, prompt, options: GenerationOptions | None = None) -> GenerationResult:
        """Answer `prompt`: a string (sent as one user turn through the chat template), a list of
        {"role", "content"} messages, or a list of token ids (sent as is)."""
        stream = self.stream(prompt, options)
        for _ in stream:
            pass
        return self.last_result

    def stream(self, prompt, options: GenerationOptions | None = None) -> Generator[str, None, GenerationResult]:
        """Like `generate`, as a generator of text pieces; stopping the iteration stops generation.
        The generator returns the GenerationResult (also kept in `last_result`)."""
        prepared = prepare(prompt, options or GenerationOptions(), self.tokenizer, self.info.context_length)
        return self._run(prepared)

    def chat(self, system_prompt: str | None = None, options: GenerationOptions | None = None):
        """A chat session that keeps history and reuses the KV cache between turns."""
        from .chat import ChatSession
        return ChatSession(self, system_prompt, options)

    def _run(self, prepared: PreparedPrompt, pieces: list | None = None) -> Generator[str, None, GenerationResult]:
        """Generate for `prepared`, yielding text pieces; they are also appended to `pieces`,
        so a caller that stops early still knows what was said."""
        pieces = [] if pieces is None else pieces
        config = prepared.options.apply_to(self._pipeline.get_generation_config())
        # genai returns a bare str for a str input; a one-item batch returns results with perf metrics.
        inputs = [prepared.inputs] if isinstance(prepared.inputs, str) else prepared.inputs
        with self._exclusive():
            self._enter_mode(isinstance(inputs, ov_genai.ChatHistory))
            results = yield from iterate_pieces(lambda streamer: self._pipeline.generate(inputs, config, streamer),
                                                pieces)
        perf = results.perf_metrics
        output_tokens = perf.get_num_generated_tokens()
        self.last_result = GenerationResult(
            text="".join(pieces),
            input_tokens=perf.get_num_input_tokens(),
            output_tokens=output_tokens,
            finish_reason="length" if output_tokens >= config.max_new_tokens else "stop",
            metrics=Metrics.from_perf(perf),
            dropped_messages=prepared.dropped_messages,
        )
        return self.last_result

    @contextmanager
    def _exclusive(self):
        if self._owner == threading.get_ident():
            raise BusyError("This thread is still iterating an earlier stream() of this engine; finish or close it first.")
        with self._lock:
            self._owner = threading.get_ident()
            try:
                yield
            finally:
                self._owner = None

    def _enter_mode(self, chat: bool) -> None:
        # With a ChatHistory the stateful pipeline keeps the conversation's KV cache between
        # calls. Switching between that and plain text or token ids without ending the chat
        # hangs or crashes genai 2026.4 with SDPA (measured); finish_chat() ends it cleanly.
        if self._chat_mode is not None and chat != self._chat_mode:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                self._pipeline.finish_chat()
        self._chat_mode = chat

    def _warm_up(self, weight_folders: list) -> tuple[float, int]:
        # The first inference after a compile repacks every weight into the CPU kernels' layout
        # (~85 % of its time, measured): pay it here, on a short prompt and two decode steps so
        # both paths are ready, and give back the mapped originals as they are repacked.
        config = GenerationOptions(max_new_tokens=2, ignore_eos=True, apply_chat_template=False).apply_to(
            self._pipeline.get_generation_config())
        start = time.perf_counter()
        with self._exclusive(), releasing_mapped_weights(weight_folders) as released:
            self._enter_mode(False)
            self._pipeline.generate([WARMUP_PROMPT], config)
        return (time.perf_counter() - start) * 1000, released()
