"""Check that a structured-output constraint compiles, before any request runs.

openvino_genai 2026.4 compiles a JSON schema, regex or EBNF grammar (XGrammar) only inside
generation, and exposes no check of its own to Python. Measured: in batching mode a constraint
that fails to compile fails `step()` and leaves the ContinuousBatchingPipeline refusing every
later step; in single mode it surfaces as a C++ error from deep inside generate. So the engine
compiles each new constraint first, on a stand-in pipeline: the model's own tokenizer (so the
check is the real compile, token masks included) and a model that only returns zero logits (so
it costs no weights and no inference). A constraint that compiles is remembered, within bounds:
at most MAX_ENTRIES constraints and MAX_BYTES of their text (least recently used go first). The
stand-in's XGrammar keeps every grammar it compiled (genai makes its GrammarCompiler with an
unbounded cache), so the stand-in is rebuilt (~0.2 s) once it has compiled MAX_ENTRIES of them.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict

import numpy as np
import openvino as ov
import openvino_genai as ov_genai

from .errors import OptionsError
from .options import GenerationOptions

# "[19:28:21] /path/to/xgrammar/cpp/json_schema_converter.cc:898: Unsupported type ..." -> "Unsupported type ..."
_XGRAMMAR_PREFIX = re.compile(r"^\[[\d:]+\]\s+\S+:\d+:\s*(Check failed: .*? is false:\s*)?")
_WHAT = {"json_schema": "JSON schema", "regex": "regex", "grammar": "EBNF grammar"}
MAX_ENTRIES = 256        # constraints remembered as compiling (a server sees a few schemas, many times each)
MAX_BYTES = 16 << 20     # of their text (a request body may carry up to --max-body-mb of schema)


class StructureChecker:
    """Compile-checks GenerationOptions' structure against one tokenizer; safe from any thread."""

    def __init__(self, tokenizer: ov_genai.Tokenizer, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES):
        self._tokenizer = tokenizer
        self._pipeline: ov_genai.LLMPipeline | None = None  # built on first use (~0.2 s)
        self._pipeline_compiles = 0                         # grammars its XGrammar cache holds
        self._compiled: OrderedDict[tuple[str, str], float] = OrderedDict()  # constraint -> its check, ms; LRU first
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._bytes = 0
        self._lock = threading.Lock()

    def check(self, options: GenerationOptions) -> float:
        """Raise OptionsError if the constraint in `options` cannot compile; return the check's
        time in ms (0 when there is none or it was checked before)."""
        structure = options.structure
        if structure is None:
            return 0.0
        with self._lock:
            if structure in self._compiled:
                self._compiled.move_to_end(structure)
                return 0.0
            start = time.perf_counter()
            self._compile(*structure)
            elapsed = (time.perf_counter() - start) * 1000
            self._remember(structure, elapsed)
            return elapsed

    @property
    def cached(self) -> tuple[int, int]:
        """(constraints remembered, bytes of their text)."""
        return len(self._compiled), self._bytes

    def _remember(self, structure: tuple[str, str], elapsed_ms: float) -> None:
        size = len(structure[1].encode())
        if size > self.max_bytes:
            return  # checked, not kept: the next request with it is checked again
        self._compiled[structure] = elapsed_ms
        self._bytes += size
        while len(self._compiled) > self.max_entries or self._bytes > self.max_bytes:
            (_, text), _ = self._compiled.popitem(last=False)
            self._bytes -= len(text.encode())

    def _compile(self, kind: str, text: str) -> None:
        config = ov_genai.GenerationConfig()
        config.max_new_tokens = 1  # the grammar compiles before the first token is sampled
        config.structured_output_config = ov_genai.StructuredOutputConfig(**{kind: text})
        try:
            self._stand_in().generate(ov.Tensor(np.array([[0]], dtype=np.int64)), config)
        except RuntimeError as error:
            raise OptionsError(f"The {_WHAT[kind]} cannot be compiled: {_xgrammar_message(error)}. "
                               f"Fix the {_WHAT[kind]} and try again.") from None

    def _stand_in(self) -> ov_genai.LLMPipeline:
        if self._pipeline_compiles >= self.max_entries:  # drop its XGrammar cache with it
            self._pipeline, self._pipeline_compiles = None, 0
        self._pipeline_compiles += 1
        if self._pipeline is None:
            vocab = len(self._tokenizer.get_vocab())  # get_vocab_vector() fails on byte-level vocabularies
            xml, weights = _zero_logits_model(vocab)
            self._pipeline = ov_genai.LLMPipeline(xml, weights, self._tokenizer, "CPU", None, ATTENTION_BACKEND="SDPA")
        return self._pipeline


def _zero_logits_model(vocab_size: int) -> tuple[str, ov.Tensor]:
    """The IR text and weights of a model with a causal LM's inputs whose logits are all zero."""
    import tempfile
    from pathlib import Path

    import openvino.opset13 as ops

    inputs = [ops.parameter([-1, -1], ov.Type.i64, name=name) for name in ("input_ids", "attention_mask", "position_ids")]
    beam_idx = ops.parameter([-1], ov.Type.i32, name="beam_idx")
    shape = ops.concat([ops.shape_of(inputs[0]), ops.constant(np.array([vocab_size], dtype=np.int64))], 0)
    logits = ops.broadcast(ops.constant(np.float32(0)), shape)
    logits.output(0).get_tensor().set_names({"logits"})
    model = ov.Model([logits], [*inputs, beam_idx], "zero_logits")
    with tempfile.TemporaryDirectory(prefix="ovchat-") as folder:
        xml = Path(folder) / "zero_logits.xml"
        ov.save_model(model, xml)
        return xml.read_text(), ov.Tensor(np.fromfile(xml.with_suffix(".bin"), dtype=np.uint8))


def _xgrammar_message(error: Exception) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    first = _XGRAMMAR_PREFIX.sub("", lines[0]) if lines else type(error).__name__
    return first.rstrip(".")
