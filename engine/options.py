"""Options as plain dataclasses, validated on construction.

`LoadOptions` become ov.Core compile properties; `GenerationOptions` become an
openvino_genai.GenerationConfig. Defaults are the seed's: LATENCY hint, one stream,
greedy decoding, no speculation, free text. Structured output (a JSON schema, any JSON object,
a regex or an EBNF grammar) is checked here for its form; whether XGrammar can compile it is
checked against the model's tokenizer before the request runs (structured.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import openvino_genai as ov_genai

from .errors import OptionsError
from .paths import compile_cache_dir
from .tool_calls import TOOL_FORMATS, Tool, check_tool_choice, check_tools

PERFORMANCE_HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")
# Measured (issue 6): with a warm CACHE_DIR, SDPA loads 3-6x faster than the default PA backend
# (Phi-3-mini shape: 1.5 s vs 8.7-17.7 s), at the same TPOT. The price is in long chats: a turn's
# prefill over SDPA slows as the history grows (Phi-3 shape, 6 turns: 1.8 -> 6.0 s; PA ~3 s flat):
# the CPU plugin runs a prompt that has a past through its one-token (decode) attention kernel.
# ATTENTION_BACKEND="PA" in the properties restores openvino.genai's default; so does
# `for_chat=True` (LoadOptions), which `ovchat chat` loads with: there PA's slower start is repaid
# within ~3 turns at Phi-3 scale (docs/performance.md).
DEFAULT_ATTENTION_BACKEND = "SDPA"
# Deterministic mode: the CPU's defaults compute in bf16 (where the CPU has it), quantize the
# activations to int8 per group and keep the KV cache in low precision, and their rounding depends on
# how many rows a step computes together, so a greedy answer could change with what ran beside it
# (measured: 2 of 9 interleaved chat turns differed). In f32, with neither, it does not (tests/test_deterministic.py).
DETERMINISTIC_PROPERTIES = {"INFERENCE_PRECISION_HINT": "f32", "DYNAMIC_QUANTIZATION_GROUP_SIZE": "0",
                            "KV_CACHE_PRECISION": "f32"}
# Any JSON object (OpenAI's response_format json_object): XGrammar's reading of this schema
# allows any properties and values (measured).
JSON_OBJECT_SCHEMA = '{"type": "object"}'


def has_attention_backends(device: str) -> bool:
    """Whether LLMPipeline offers a choice of SDPA and PA on `device` (CPU and GPU do)."""
    return device.strip().upper().split(":")[0].split(".")[0] in ("CPU", "GPU")


@dataclass(frozen=True)
class BatchOptions:
    """The batching mode (`Engine.load(batching=...)`): ContinuousBatchingPipeline on PagedAttention.

    Requests from many threads run together; each sequence advances one token per step."""
    max_sequences: int = 16           # sequences decoded together in one step
    max_batched_tokens: int = 2048    # tokens one step may process (prefill chunks included)
    kv_cache_gb: int = 0              # KV-cache size in GB; 0 lets the CPU plugin grow it as needed
    prefix_caching: bool = True       # reuse the KV cache of a prompt prefix already seen (chat turns)

    def __post_init__(self):
        _check(isinstance(self.max_sequences, int) and self.max_sequences >= 1,
               f"max_sequences={self.max_sequences!r} must be a whole number >= 1.")
        _check(isinstance(self.max_batched_tokens, int) and self.max_batched_tokens >= 1,
               f"max_batched_tokens={self.max_batched_tokens!r} must be a whole number >= 1.")
        _check(isinstance(self.kv_cache_gb, int) and self.kv_cache_gb >= 0,
               f"kv_cache_gb={self.kv_cache_gb!r} must be a whole number of GB >= 0 (0: grow as needed).")

    def to_scheduler_config(self) -> ov_genai.SchedulerConfig:
        config = ov_genai.SchedulerConfig()
        config.max_num_seqs = self.max_sequences
        config.max_num_batched_tokens = self.max_batched_tokens
        config.cache_size = self.kv_cache_gb
        config.enable_prefix_caching = self.prefix_caching
        config.dynamic_split_fuse = True
        return config


@dataclass(frozen=True)
class LoadOptions:
    device: str = "CPU"
    performance_hint: str | None = "LATENCY"
    num_streams: int | None = 1
    cache_dir: str | Path | bool = True   # True: ovchat's compile cache; False: none
    warmup: bool = True
    properties: dict = field(default_factory=dict)
    batching: BatchOptions | None = None  # None: the single-stream mode (LLMPipeline)
    # Speculative decoding: guess tokens cheaply, check them all in one pass of the model.
    prompt_lookup: bool = False           # guesses copied from the prompt (n-gram match): for grounded work
    draft_model: str | Path | None = None  # guesses from a smaller model with the same tokenizer
    num_assistant_tokens: int = 5         # tokens guessed per step
    max_ngram_size: int = 8               # prompt lookup: longest n-gram matched (8: fewer passes than 3 on edits and summaries, measured)
    deterministic: bool = False           # a greedy answer whatever runs beside it (DETERMINISTIC_PROPERTIES)
    for_chat: bool = False                # many-turn chats: PagedAttention, whose prefill stays flat as the history grows

    def __post_init__(self):
        if self.deterministic:
            clashing = [f"{k}={self.properties[k]}" for k, v in DETERMINISTIC_PROPERTIES.items()
                        if k in self.properties and str(self.properties[k]).lower() != v.lower()]
            _check(not clashing, f"deterministic=True sets {', '.join(f'{k}={v}' for k, v in DETERMINISTIC_PROPERTIES.items())}; "
                                 f"drop {', '.join(clashing)} or deterministic.")
        _check(not (self.prompt_lookup and self.draft_model),
               "prompt_lookup and draft_model are two kinds of speculative decoding; pick one.")
        _check(isinstance(self.num_assistant_tokens, int) and self.num_assistant_tokens >= 1,
               f"num_assistant_tokens={self.num_assistant_tokens!r} must be a whole number >= 1.")
        _check(isinstance(self.max_ngram_size, int) and self.max_ngram_size >= 1,
               f"max_ngram_size={self.max_ngram_size!r} must be a whole number >= 1.")
        if self.speculative and str(self.properties.get("ATTENTION_BACKEND", "PA")).upper() != "PA":
            raise OptionsError("Speculative decoding runs on PagedAttention in openvino_genai; "
                               "drop ATTENTION_BACKEND=SDPA (the engine then uses PA).")
        if self.performance_hint is not None and self.performance_hint.upper() not in PERFORMANCE_HINTS:
            raise OptionsError(
                f"performance_hint={self.performance_hint!r} is not one of {', '.join(PERFORMANCE_HINTS)}."
            )
        if self.num_streams is not None and (not isinstance(self.num_streams, int) or self.num_streams < 1):
            raise OptionsError(f"num_streams={self.num_streams!r} must be a whole number >= 1 (or None for the device's choice).")

    def to_properties(self) -> dict:
        """ov.Core compile properties, as LLMPipeline's constructor takes them."""
        props = {}
        if self.performance_hint:
            props["PERFORMANCE_HINT"] = self.performance_hint.upper()
        if self.num_streams:
            props["NUM_STREAMS"] = str(self.num_streams)
        if self.compile_cache:
            props["CACHE_DIR"] = str(self.compile_cache)
        if has_attention_backends(self.device) and self.batching is None:  # batching always runs on PA
            # Speculative decoding needs PA: genai runs it on its continuous-batching core.
            props["ATTENTION_BACKEND"] = "PA" if self.speculative or self.for_chat else DEFAULT_ATTENTION_BACKEND
        if self.deterministic:
            props.update(DETERMINISTIC_PROPERTIES)
        props.update(self.properties)
        return props

    @property
    def speculative(self) -> bool:
        return bool(self.prompt_lookup or self.draft_model)

    def apply_speculation(self, config: ov_genai.GenerationConfig) -> ov_genai.GenerationConfig:
        """Set the per-request speculation settings genai needs on a speculative pipeline."""
        if self.speculative:
            config.num_assistant_tokens = self.num_assistant_tokens
            if self.prompt_lookup:
                config.max_ngram_size = self.max_ngram_size
        return config

    @property
    def compile_cache(self) -> Path | None:
        if self.cache_dir is True:
            return compile_cache_dir()
        return Path(self.cache_dir).expanduser() if self.cache_dir else None


@dataclass(frozen=True)
class GenerationOptions:
    max_new_tokens: int = 256
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0     # subtracted from a token's logit once it has appeared (OpenAI's sense)
    frequency_penalty: float = 0.0    # subtracted once per time it has appeared
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False
    apply_chat_template: bool = True
    # Structured output, at most one (XGrammar masks every token that would break it):
    json_schema: dict | str | None = None  # a JSON schema; kept as its JSON text
    json_object: bool = False              # any JSON object (response_format json_object)
    regex: str | None = None               # a regular expression the whole answer matches
    grammar: str | None = None             # an EBNF grammar (XGrammar's dialect, rule `root` first)
    # Function calling (tool_calls.py): tools offered, as Tool objects or OpenAI function dicts.
    tools: tuple[Tool, ...] = ()
    tool_choice: str = "auto"              # "auto", "none" (offer none), "required", or a tool's name
    parallel_tool_calls: bool = True       # may one answer hold several calls?
    tool_format: str | None = None         # the call format (tool_parsers/); None: read from the chat template
    constrain_tool_calls: bool = True      # a grammar keeps calls parseable (tool_grammar.py); False: parse only
    # Each generated token's id, text and log-probability (GenerationResult.tokens, TextStream.tokens()):
    # the batching mode only, as genai's sampler computed it (see docs/server.md, Logprobs).
    logprobs: bool = False
    # Thinking models (reasoning.py): None thinks as the chat template does by default; False asks
    # it not to (`enable_thinking=False`: templates that cannot are refused); True asks it to.
    thinking: bool | None = None
    separate_reasoning: bool = True        # the thinking goes to `result.reasoning`, not the text
    template_kwargs: dict = field(default_factory=dict)  # more variables for the chat template

    def __post_init__(self):
        _check(isinstance(self.max_new_tokens, int) and self.max_new_tokens >= 1,
               f"max_new_tokens={self.max_new_tokens!r} must be a whole number >= 1.")
        _check(_is_number(self.temperature) and self.temperature >= 0,
               f"temperature={self.temperature!r} must be >= 0 (0 means greedy).")
        _check(_is_number(self.top_p) and 0 < self.top_p <= 1,
               f"top_p={self.top_p!r} must be in (0, 1]; 1 disables nucleus sampling.")
        _check(isinstance(self.top_k, int) and self.top_k >= 0,
               f"top_k={self.top_k!r} must be a whole number >= 0; 0 disables it.")
        _check(_is_number(self.repetition_penalty) and self.repetition_penalty > 0,
               f"repetition_penalty={self.repetition_penalty!r} must be > 0; 1 disables it.")
        for name in ("presence_penalty", "frequency_penalty"):
            value = getattr(self, name)
            _check(_is_number(value) and -2 <= value <= 2, f"{name}={value!r} must be in [-2, 2]; 0 disables it.")
        _check(self.seed is None or (isinstance(self.seed, int) and self.seed >= 0),
               f"seed={self.seed!r} must be a whole number >= 0 or None.")
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        _check(all(isinstance(s, str) and s for s in self.stop), "stop strings must be non-empty strings.")
        _check(isinstance(self.logprobs, bool), "logprobs must be True or False.")
        _check(self.thinking is None or isinstance(self.thinking, bool), "thinking must be True, False or None (the template's default).")
        _check(isinstance(self.separate_reasoning, bool), "separate_reasoning must be True or False.")
        _check(isinstance(self.template_kwargs, dict) and all(isinstance(k, str) for k in self.template_kwargs),
               "template_kwargs must be a dict of variable names (strings) to values.")
        self._check_structure()
        self._check_tools()

    @property
    def offers_tools(self) -> bool:
        """Whether the model is offered tools (some are given and tool_choice is not "none")."""
        return bool(self.tools) and self.tool_choice != "none"

    def _check_tools(self) -> None:
        object.__setattr__(self, "tools", check_tools(self.tools))
        object.__setattr__(self, "tool_choice", check_tool_choice(self.tool_choice, self.tools))
        _check(isinstance(self.parallel_tool_calls, bool), "parallel_tool_calls must be True or False.")
        _check(isinstance(self.constrain_tool_calls, bool), "constrain_tool_calls must be True or False.")
        _check(self.tool_format is None or self.tool_format in TOOL_FORMATS,
               f"tool_format={self.tool_format!r} is not one of {', '.join(TOOL_FORMATS)} (or None: from the chat template).")
        _check(not (self.offers_tools and self.structure),
               "Tools and structured output (json_schema, json_object, regex, grammar) cannot be combined; "
               "describe the answer's shape as a tool's parameters instead.")
        _check(not self.offers_tools or self.apply_chat_template,
               "Tools are offered through the chat template; keep apply_chat_template=True.")

    @property
    def structure(self) -> tuple[str, str] | None:
        """("json_schema" | "regex" | "grammar", its text) for XGrammar, or None for free text."""
        if self.json_object:
            return ("json_schema", JSON_OBJECT_SCHEMA)
        for kind in ("json_schema", "regex", "grammar"):
            if getattr(self, kind) is not None:
                return (kind, getattr(self, kind))
        return None

    def _check_structure(self) -> None:
        chosen = [k for k in ("json_schema", "json_object", "regex", "grammar") if getattr(self, k) not in (None, False)]
        _check(len(chosen) <= 1, f"Pass at most one of json_schema, json_object, regex and grammar (got {', '.join(chosen)}).")
        schema = self.json_schema
        if isinstance(schema, str):
            try:
                schema = json.loads(schema)
            except json.JSONDecodeError as error:
                raise OptionsError(f"json_schema is not valid JSON: {error}. Pass a JSON schema object.") from None
        if schema is not None:
            _check(isinstance(schema, dict), f"json_schema must be a JSON object (a dict), got {type(schema).__name__}.")
            try:
                object.__setattr__(self, "json_schema", json.dumps(schema))
            except (TypeError, ValueError) as error:
                raise OptionsError(f"json_schema cannot be written as JSON: {error}.") from None
        for kind in ("regex", "grammar"):
            value = getattr(self, kind)
            _check(value is None or (isinstance(value, str) and value.strip() != ""),
                   f"{kind} must be a non-empty string.")
        _check(isinstance(self.json_object, bool), "json_object must be True or False.")

    @property
    def shaped(self) -> bool:
        """Whether the answer is held to a shape: structured output, or tools offered (their calls'
        arguments). Penalties a request leaves out stay off then (decoding.recommended_options)."""
        return self.structure is not None or self.offers_tools

    @property
    def greedy(self) -> bool:
        return not self.do_sample or self.temperature == 0

    @property
    def picks_most_likely(self) -> bool:
        """Whether each chosen token is the model's most likely one: greedy decoding with nothing
        that reshapes the distribution first (penalties, a grammar, tools). genai reports only the chosen
        token's log-probability, so only then is it also the top-1 alternative."""
        return (self.greedy and self.repetition_penalty == 1.0 and self.presence_penalty == 0.0
                and self.frequency_penalty == 0.0 and self.structure is None and not self.offers_tools)

    def apply_to(self, config: ov_genai.GenerationConfig) -> ov_genai.GenerationConfig:
        """Set these options on `config`, a fresh copy of the model's own (its stop token ids included)."""
        config.max_new_tokens = self.max_new_tokens
        config.do_sample = not self.greedy
        if not self.greedy:
            config.temperature = float(self.temperature)
            config.top_p = float(self.top_p)
            config.top_k = self.top_k if self.top_k else 2**31 - 1
            if self.seed is not None:
                config.rng_seed = self.seed
        config.repetition_penalty = float(self.repetition_penalty)
        config.presence_penalty = float(self.presence_penalty)
        config.frequency_penalty = float(self.frequency_penalty)
        config.stop_strings = set(self.stop)
        config.ignore_eos = self.ignore_eos
        config.apply_chat_template = self.apply_chat_template
        # genai's sampler then returns each chosen token's log-probability under the raw model
        # distribution (before penalties, temperature, grammar); any value above 1 gives the same
        # (measured, genai 2026.4: no top-k alternatives).
        config.logprobs = 1 if self.logprobs else 0
        if self.structure:
            kind, text = self.structure
            config.structured_output_config = ov_genai.StructuredOutputConfig(**{kind: text})
        return config


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise OptionsError(message)
