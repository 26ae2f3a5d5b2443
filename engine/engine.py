"""The Engine: load a model once, then generate, stream or chat with it, from any thread.

Two modes, one API. The default, single-stream mode runs openvino_genai.LLMPipeline (SDPA: the
fastest start-up) and serves requests one after another; `batching=True` runs
ContinuousBatchingPipeline (PagedAttention) and serves them together, for servers and apps with
concurrent users. Either way a runner thread owns the pipeline, every call gets its own
TextStream and its own result, and closing a stream cancels that request only.
Text goes in and out through the model's own openvino-tokenizers models.

A request's way in: `prepare` (template, fit to the context, encode: prompt.py), then `_run`
(its constraint compiled if new, its GenerationConfig, the runner's queue), then the runner's
thread. `stream()` prepares on the caller's thread and waits for the engine to take the
request, so a bad prompt raises there. `start()` returns at once and does the same on the
engine's preparer threads (a server's event loop must never wait): the first event on its sink
says Accepted or Failed. A request whose constraint is new compiles it on a thread of its own
(preparer.py), so it delays no other request's start.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import openvino_genai as ov_genai

from .batch import BatchRunner
from .devices import check_device
from .errors import EngineError, EngineStoppedError, ModelError, OptionsError, reason
from .events import Accepted
from .memory import releasing_mapped_weights
from .model import ModelInfo, damaged_files_message, loadable
from .options import BatchOptions, GenerationOptions, LoadOptions
from .preparer import Preparer
from .prompt import PreparedPrompt, prepare
from .reasoning import Splitter
from .results import GenerationResult, LoadMetrics
from .runner import CLOSED
from .single import SingleRunner
from .speculative import speculative_properties
from .stream import Feed, Handle, TextStream
from .structured import StructureChecker
from .tokenizer import Tokenizer


WARMUP_PROMPT = "The quick brown fox jumps over the lazy dog, then rests by the river until noon."


@dataclass(frozen=True)
class EngineStats:
    mode: str                       # "single" or "batch"
    running: int                    # requests generating now
    waiting: int                    # requests queued behind them
    kv_cache_usage: float | None    # share of the KV cache in use (batching mode), else None


class Engine:
    """A loaded model. Make one with `Engine.load(...)`; every method is safe from any thread."""

    def __init__(self, runner, info: ModelInfo, load_options: LoadOptions, tokenizer: Tokenizer):
        self._runner = runner
        self.info = info
        self.load_options = load_options
        self.tokenizer = tokenizer
        self.load_metrics = LoadMetrics(load_ms=0.0, warmup_ms=0.0, released_mb=0.0)
        self._stopped: str | None = None
        self._stop_ids = set(info.eos_token_ids)  # a list in generation_config.json: Phi-3 ends turns with <|end|>
        self._structure_checker = StructureChecker(runner.pipeline.get_tokenizer())
        self._preparer = Preparer(self._prepare, self._structure_checker.known, self._run)

    @classmethod
    def load(cls, model: str | Path | None = None, device: str = "CPU", performance_hint: str | None = "LATENCY",
             num_streams: int | None = 1, cache_dir: str | Path | bool = True, warmup: bool = True,
             batching: bool | BatchOptions = False, prompt_lookup: bool = False, draft_model: str | Path | None = None,
             num_assistant_tokens: int = 5, max_ngram_size: int = 8, deterministic: bool = False,
             for_chat: bool = False, **ov_properties) -> "Engine":
        """Load `model` (an exported folder, a .gguf file, or None for the default model) on `device`.

        `performance_hint`, `num_streams` and `cache_dir` are the seed's ov.Core compile
        properties; `cache_dir=True` (the default) keeps compiled models in ovchat's cache
        (`engine.paths.compile_cache_dir()`), `False` turns caching off. Any other OpenVINO or
        LLMPipeline property passes through `ov_properties` (e.g. KV_CACHE_PRECISION="u8",
        ATTENTION_BACKEND="PA"; the single-stream mode uses SDPA on CPU and GPU, see options.py).
        `batching` (True or a BatchOptions) serves concurrent requests together on
        ContinuousBatchingPipeline. `prompt_lookup=True` or `draft_model=PATH` (a smaller model
        with the same tokenizer) turn on speculative decoding, `num_assistant_tokens` guesses per
        step (on PagedAttention; see speculative.py). `deterministic=True` computes in f32 without
        dynamic quantization, so a greedy answer is the same whatever runs beside it (alone, in a
        batch, after a cached prefix, with speculation), at a cost in speed (README). `warmup` runs a short inference now, so the first real call
        is as fast as the next ones, and releases the mapped weight pages it made redundant.
        `for_chat=True` tunes the engine for chats of many turns (`chat()`, as `ovchat chat` loads
        it): PagedAttention, whose prefill stays flat as the history grows, where the default SDPA
        loads faster but slows every turn (2x by the 6th at Phi-3 scale; docs/performance.md).
        An ATTENTION_BACKEND property still wins; the batching mode always runs on PA.
        """
        info = loadable(model)
        batch = BatchOptions() if batching is True else (batching or None)
        options = LoadOptions(check_device(device), performance_hint, num_streams, cache_dir, warmup, ov_properties, batch,
                              prompt_lookup, draft_model, num_assistant_tokens, max_ngram_size, deterministic,
                              for_chat)
        start = time.perf_counter()
        try:
            properties = options.to_properties()
            if options.speculative:
                properties.update(speculative_properties(options, info))
            if batch is None:
                pipeline = ov_genai.LLMPipeline(str(info.path), options.device, **properties)
            else:
                pipeline = ov_genai.ContinuousBatchingPipeline(str(info.path), batch.to_scheduler_config(),
                                                               options.device, properties)
        except RuntimeError as error:
            raise ModelError(damaged_files_message(info) or
                f"OpenVINO could not load {info.path} on {options.device}: {reason(error)}. "
                "Check the files are complete (re-export if in doubt) and the properties are valid for this device."
            ) from None
        tokenizer = Tokenizer(info, pipeline.get_tokenizer())
        runner = SingleRunner(pipeline) if batch is None else BatchRunner(pipeline)
        engine = cls(runner, info, options, tokenizer)
        load_ms = (time.perf_counter() - start) * 1000
        warmup_ms, released = engine._warm_up([info.path, options.compile_cache]) if warmup else (0.0, 0)
        engine.load_metrics = LoadMetrics(load_ms, warmup_ms, released_mb=released / 2**20)
        return engine

    @property
    def mode(self) -> str:
        """"single" (one generation at a time) or "batch" (continuous batching)."""
        return self._runner.mode

    def generate(self, prompt, options: GenerationOptions | None = None) -> GenerationResult:
        """Answer `prompt`: a string (sent as one user turn through the chat template), a list of
        {"role", "content"} messages, or a list of token ids (sent as is)."""
        with self.stream(prompt, options) as stream:
            for _ in stream:
                pass
        return stream.result

    def stream(self, prompt, options: GenerationOptions | None = None) -> TextStream:
        """Like `generate`, as a TextStream of text pieces; its `result` is set once it ends.
        Closing it (or breaking out of a `with` block) cancels this request only."""
        return self.submit(self._prepare(prompt, options))

    def start(self, prompt, options: GenerationOptions | None, sink, handle: Handle | None = None) -> Handle:
        """Start a request without waiting: its events (events.py) go to `sink` (an object with
        put(event) and flush()), from other threads, the first one Accepted or Failed (a
        PromptError, an OptionsError...). The returned Handle (`handle` if given) cancels it."""
        handle = handle or Handle()
        self._preparer.start(prompt, options, sink, handle)
        return handle

    def chat(self, system_prompt: str | None = None, options: GenerationOptions | None = None):
        """A chat session that keeps history and reuses the KV cache between turns (for long
        chats, load with `for_chat=True`: see `load`)."""
        from .chat import ChatSession
        return ChatSession(self, system_prompt, options)

    def stats(self) -> EngineStats:
        """What the engine is doing now: for a server's metrics and load shedding."""
        runner = self._runner
        return EngineStats(runner.mode, runner.running(), runner.waiting(), runner.kv_cache_usage())

    @property
    def stopped(self) -> str | None:
        """Why this engine no longer answers (it was closed, or its runner thread failed), else
        None; as EngineProcess's. A server's /health reads it."""
        return self._stopped or self._runner.failure

    @property
    def failed(self) -> threading.Event:
        """Set once the runner's thread has failed (`stopped` says why): an engine process waits on it."""
        return self._runner.failed

    def close(self) -> None:
        """Stop the runner thread: open and queued streams end as "cancelled"; later calls raise."""
        self._stopped = CLOSED
        self._preparer.close()
        self._runner.close()

    def submit(self, prepared: PreparedPrompt) -> TextStream:
        """Run an already prepared prompt (see prompt.prepare); chat sessions use it."""
        stream = TextStream()
        self._run(prepared, stream.sink, stream.handle)
        return stream.wait_accepted()

    def _prepare(self, prompt, options: GenerationOptions | None) -> PreparedPrompt:
        if self.stopped:
            raise EngineStoppedError(self.stopped)
        return prepare(prompt, options or GenerationOptions(), self.tokenizer, self.info.context_length)

    def _run(self, prepared: PreparedPrompt, sink, handle: Handle) -> None:
        """Hand a prepared prompt to the runner; Accepted, or Failed with the reason, goes to `sink`."""
        accepted = Accepted(prepared.input_tokens, prepared.dropped_messages, prepared.tool_format)
        splitter = (Splitter(prepared.thinking, prepared.thinking_start)
                    if prepared.thinks and prepared.options.separate_reasoning else None)
        feed = Feed(sink, handle, accepted, tuple(t.name for t in prepared.options.tools), splitter)
        try:
            if self.stopped:
                raise EngineStoppedError(self.stopped)
            config = self._config(prepared)
            handle.on_cancel = self._runner.wake_on_cancel
            if self.mode == "batch":
                self._runner.submit(prepared.ids, config, feed, prepared.dropped_messages)
            else:
                self._runner.submit(prepared.inputs, prepared.input_tokens, config, feed, prepared.dropped_messages)
        except EngineError as error:
            feed.end(error=error)

    def _config(self, prepared: PreparedPrompt):
        """The request's GenerationConfig, its constraint compiled first (a constraint that
        cannot compile fails here, not mid-run)."""
        if prepared.tool_grammar:
            self._check_tool_grammar(prepared)
        else:
            self._structure_checker.check(prepared.options)  # its own message, when it is the constraint at fault
        self._structure_checker.check_structure(prepared.structure)  # after a thinking, when the model thinks
        if prepared.options.logprobs and self.mode != "batch":
            raise OptionsError("Per-token logprobs need the batching mode: load with Engine.load(..., batching=True). "
                               "(genai's LLMPipeline reports only the answer's total log-probability.)")
        config = self.load_options.apply_speculation(prepared.options.apply_to(self._runner.generation_config()))
        if prepared.structure:
            kind, text = prepared.structure
            config.structured_output_config = ov_genai.StructuredOutputConfig(**{kind: text})
        config.stop_token_ids = set(config.stop_token_ids) | self._stop_ids
        return config

    def _check_tool_grammar(self, prepared: PreparedPrompt) -> None:
        """Compile the tools' grammar first; if it fails, name the tool whose schema is at fault."""
        try:
            self._structure_checker.check_structure(("structural_tags_config", prepared.tool_grammar))
        except OptionsError:
            for i, tool in enumerate(prepared.options.tools):
                try:
                    self._structure_checker.check_structure(("json_schema", json.dumps(tool.parameters)))
                except OptionsError as error:
                    raise OptionsError(f"Tool {tool.name!r} (tools[{i}]): {error}",
                                       param=f"tools[{i}].parameters") from None
            raise

    def _warm_up(self, weight_folders: list) -> tuple[float, int]:
        # The first inference after a compile repacks every weight into the CPU kernels' layout
        # (~85 % of its time, measured): pay it here, on a short prompt and two decode steps so
        # both paths are ready, and give back the mapped originals as they are repacked.
        options = GenerationOptions(max_new_tokens=2, ignore_eos=True, apply_chat_template=False)
        start = time.perf_counter()
        with releasing_mapped_weights(weight_folders) as released:
            self.generate(WARMUP_PROMPT, options)
        return (time.perf_counter() - start) * 1000, released()

