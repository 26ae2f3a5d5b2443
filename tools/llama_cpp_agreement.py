"""Next-token agreement of an export with llama.cpp running the GGUF it was exported from.

llama.cpp (llama-cpp-python, the `bench` extra) is the reference a GGUF user knows: it computes
with the file's own blocks. Both read the same token ids, teacher-forced over tools/fidelity.py's
text; we report the share of positions where both pick the same next token (top-1).

The ids are llama.cpp's tokenization of the text with the special tokens the file asks for (BOS
for Gemma, none for SmolLM2): the reference's ids by construction, and the way both llama.cpp and
ovchat feed a raw prompt. Gemma 3 without its BOS is out of distribution (agreement 0.66 instead of
0.74 on 270M), so the file's rule matters. `same_ids` records whether the export's own tokenizer
encodes the text to those ids (the figure is about the model, not the tokenizer; the tokenizer's
parity has its own test).

Without llama-cpp-python, or when llama.cpp cannot load the file, `check` returns a record that
says why it was skipped instead of failing the export.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from .fidelity import TEXT, export_logits


@dataclass(frozen=True)
class Agreement:
    top1_agreement: float
    tokens: int                 # teacher-forced positions compared (the text's ids minus one)
    bos: bool                   # whether llama.cpp put a BOS first (the file's add_bos_token)
    same_ids: bool              # the export's tokenizer encodes the text to llama.cpp's ids
    llama_cpp_version: str

    def to_manifest(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return (f"top-1 agreement with llama.cpp {self.top1_agreement:.3f} over {self.tokens} positions "
                f"(llama-cpp-python {self.llama_cpp_version})")


def missing() -> str | None:
    """Why llama.cpp is not available here, or None when it is."""
    try:
        import llama_cpp  # noqa: F401
    except (ImportError, OSError) as error:  # OSError: its shared library would not load
        return f"llama-cpp-python is not installed (the bench extra: pip install 'ovchat[bench]'): {error}"
    return None


def reference_ids(gguf: Path, text: str = TEXT) -> tuple:
    """(llama.cpp's ids of `text` with the special tokens the file adds, whether a BOS came first)."""
    import llama_cpp

    with quiet():
        vocab = llama_cpp.Llama(str(gguf), vocab_only=True, verbose=False)
    ids = vocab.tokenize(text.encode(), add_bos=True)  # add_bos=True: as the file says (llama_tokenize's add_special)
    return ids, bool(ids) and ids[0] == vocab.token_bos()


def reference_top1(gguf: Path, ids: list, n_threads: int = 2):
    """llama.cpp's argmax next token after each prefix of `ids` (teacher-forced), numpy int array."""
    import llama_cpp
    import numpy as np

    # n_ctx sized to the text: with logits_all the scores are n_ctx x vocab floats (1 GB for Gemma at 1024)
    with quiet():
        model = llama_cpp.Llama(str(gguf), n_ctx=len(ids) + 8, logits_all=True, vocab_only=False, verbose=False,
                                n_threads=n_threads)
    model.eval(ids)
    return np.asarray(model.scores[:len(ids)]).argmax(-1)


@contextlib.contextmanager
def quiet():
    """stderr sent to /dev/null at the file descriptor: llama.cpp prints its context warnings (SWA cache, n_ctx)
    from C even with verbose=False, into the export's progress; a load that fails raises anyway."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def top1_agreement(reference_top, logits) -> float:
    """Share of next-token positions (the last has no next token) where `logits` picks llama.cpp's token."""
    import numpy as np

    return float((np.asarray(logits).argmax(-1)[:-1] == np.asarray(reference_top)[:-1]).mean())


def measure(gguf: Path, export_dir: Path, text: str = TEXT) -> Agreement:
    """Teacher-forced top-1 agreement of the exported IR in `export_dir` with llama.cpp on `gguf`."""
    import llama_cpp
    import openvino_genai as ov_genai

    ids, bos = reference_ids(gguf, text)
    expected = reference_top1(gguf, ids)
    own_ids = ov_genai.Tokenizer(str(export_dir)).encode(text).input_ids.data[0].tolist()
    agreement = top1_agreement(expected, export_logits(export_dir, ids))
    return Agreement(agreement, len(ids) - 1, bos, own_ids == ids, llama_cpp.__version__)


def check(gguf: Path, export_dir: Path) -> tuple:
    """(manifest record, one line for the user): the agreement, or why it was skipped."""
    why = missing()
    if why is None:
        try:
            result = measure(gguf, export_dir)
            return result.to_manifest(), result.summary()
        except ValueError as error:  # llama-cpp-python's "Failed to load model from file": an older llama.cpp
            why = f"llama.cpp could not run {Path(gguf).name}: {error}"
    return {"skipped": why}, f"llama.cpp agreement skipped: {why}"
