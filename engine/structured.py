"""Check that a structured-output constraint compiles, before any request runs.

openvino_genai 2026.4 compiles a JSON schema, regex or EBNF grammar (XGrammar) only inside
generation, and exposes no check of its own to Python. Measured: in batching mode a constraint
that fails to compile fails `step()` and leaves the ContinuousBatchingPipeline refusing every
later step; in single mode it surfaces as a C++ error from deep inside generate. So the engine
compiles each new constraint first, on a stand-in pipeline: the model's own tokenizer (so the
check is the real compile, token masks included) and a model that only returns zero logits (so
it costs no weights and no inference). A constraint that compiles is remembered (and not checked
again). Different constraints compile at once on different threads (each thread has its own
stand-in: a pipeline is entered from one thread at a time); requests that need the same new
constraint wait for its one compile.

Memory: every distinct constraint compiled in a process keeps ~1.2 MB that nothing frees
(measured on the default model's 49k-token vocabulary: +1.18 MB per new JSON schema, linear over
190 of them, the same with the stand-in rebuilt every 8 compiles, and flat over 190 compiles of
2 known ones). It is held below genai's Python API (XGrammar's grammar caches; genai makes its
GrammarCompiler with an unbounded cache and offers no way to clear it). So the bound is on
admission: past MAX_CONSTRAINTS distinct constraints, or MAX_BYTES of their text, a new one is
refused with an OptionsError (a 400 from the server) while known ones go on working.
"""

from __future__ import annotations

import re
import threading
import time

import numpy as np
import openvino as ov
import openvino_genai as ov_genai

from .errors import OptionsError
from .options import GenerationOptions

# "[19:28:21] /path/to/xgrammar/cpp/json_schema_converter.cc:898: Unsupported type ..." -> "Unsupported type ..."
_XGRAMMAR_PREFIX = re.compile(r"^\[[\d:]+\]\s+\S+:\d+:\s*(Check failed: .*? is false:\s*)?")
_WHAT = {"json_schema": "JSON schema", "regex": "regex", "grammar": "EBNF grammar",
         "structural_tags_config": "tool-call grammar"}
MAX_CONSTRAINTS = 256    # distinct constraints per engine (~1.2 MB each that cannot be freed: ~300 MB at most)
MAX_BYTES = 16 << 20     # of their text (a request body may carry up to --max-body-mb of schema)


class StructureChecker:
    """Compile-checks GenerationOptions' structure against one tokenizer; safe from any thread."""

    def __init__(self, tokenizer: ov_genai.Tokenizer, max_constraints: int = MAX_CONSTRAINTS, max_bytes: int = MAX_BYTES):
        self._tokenizer = tokenizer
        self._stand_ins = threading.local()                 # a pipeline per thread, built on first use (~0.2 s)
        self._compiled: dict[tuple[str, str], float] = {}   # constraint -> its compile check, ms
        self._compiling: dict[tuple[str, str], threading.Event] = {}
        self.max_constraints, self.max_bytes = max_constraints, max_bytes
        self._bytes = 0
        self._lock = threading.Lock()

    def check(self, options: GenerationOptions) -> float:
        """Raise OptionsError if the constraint in `options` cannot compile; return the check's
        time in ms (0 when there is none or it was checked before)."""
        return self.check_structure(options.structure)

    def known(self, structure: tuple[str, str] | None) -> bool:
        """True when `structure` needs no compile (none, or compiled before)."""
        return structure is None or structure in self._compiled

    def check_structure(self, structure: tuple[str, str] | None) -> float:
        """As `check`, for a (kind, text) constraint: kind a StructuredOutputConfig field."""
        while not self.known(structure):
            with self._lock:
                if structure in self._compiled:
                    return 0.0
                if (underway := self._compiling.get(structure)) is None:
                    self._admit(structure)
                    underway = self._compiling[structure] = threading.Event()
                    break
            underway.wait()  # another thread compiles it: its outcome is ours (a failure, compiled again)
        else:
            return 0.0
        try:
            start = time.perf_counter()
            self._compile(*structure)
            elapsed = (time.perf_counter() - start) * 1000
            with self._lock:
                self._compiled[structure] = elapsed
                self._bytes += len(str(structure[1]).encode())
            return elapsed
        finally:
            with self._lock:
                self._compiling.pop(structure).set()

    def _admit(self, structure: tuple[str, str]) -> None:
        size = len(str(structure[1]).encode())
        if len(self._compiled) + len(self._compiling) >= self.max_constraints or self._bytes + size > self.max_bytes:
            raise OptionsError(
                f"This engine has compiled {len(self._compiled)} distinct structured-output constraints "
                f"({self._bytes} bytes of them), its bound: each one holds memory that cannot be freed. "
                "Reuse one of those schemas, or restart the engine.")

    @property
    def cached(self) -> tuple[int, int]:
        """(distinct constraints compiled, bytes of their text)."""
        return len(self._compiled), self._bytes

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
        pipeline = getattr(self._stand_ins, "pipeline", None)
        if pipeline is None:
            vocab = len(self._tokenizer.get_vocab())  # get_vocab_vector() fails on byte-level vocabularies
            xml, weights = _zero_logits_model(vocab)
            pipeline = ov_genai.LLMPipeline(xml, weights, self._tokenizer, "CPU", None, ATTENTION_BACKEND="SDPA")
            self._stand_ins.pipeline = pipeline
        return pipeline


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
