"""Fidelity of an export, measured against its unquantized source on a fixed English text.

Both models read the same token ids (teacher forcing); we report
  top1_agreement   share of positions where both predict the same next token,
  perplexity_*     exp(mean next-token negative log-likelihood) of each on the text,
  perplexity_ratio export / source (1.0 = no loss).

Threshold (THRESHOLD): top-1 agreement >= 0.65 and perplexity ratio <= 1.50. Measured on the
default model (SmolLM2-135M-Instruct, Q4_1 GGUF dequantized to float32 as the source), this text:
  int8 (per-channel asym)                 agreement 0.938  ratio 1.009
  int4 sym group 64 ratio 0.6 (default)   agreement 0.779  ratio 1.197   105 MB per decode step
  int4 sym group 64 ratio 1.0 (int4)      agreement 0.709  ratio 1.296    85 MB
  int4 sym per-channel ratio 1.0          agreement 0.612  ratio 1.779
The default passes with margin, as does int4 everywhere with groups (lossy but a fair choice
for a user to make); per-channel int4 on a 135M model, which damages it (perplexity +78%), fails
on both counts. Small models are the hardest case, so larger ones pass more easily.

NNCF's data-aware options on ratio 1.0, calibrated on tools/calibration.py (2026-12-01,
studies/export_presets.py, results in studies/results/2026-12-01-export-presets/):
  + AWQ                                   agreement 0.747  ratio 1.293    85 MB
  + scale estimation                      agreement 0.758  ratio 1.173    85 MB
  + AWQ + scale estimation (int4-awq)     agreement 0.782  ratio 1.139    85 MB
  + GPTQ                                  agreement 0.765  ratio 1.322    85 MB
  + AWQ + GPTQ                            agreement 0.765  ratio 1.270    85 MB
  all layers (output/embedding int4 too)  agreement 0.654  ratio 1.488    72 MB
  all layers + AWQ + scale estimation     agreement 0.716  ratio 1.298    72 MB
AWQ with scale estimation recovers what ratio 1.0 loses and more: the seed's agreement at a lower
perplexity, with 19 % fewer bytes read per token. 290 tokens make agreement uncertain by about
±0.025 (one standard error), so read agreements within 0.03 as equal; the perplexity ratio is steadier.

A tiny random model is the exception: its predictions are near-uniform, so the top-1 token is
decided by noise and agreement means nothing; its perplexity ratio still holds (~1.0). For
such models (source perplexity above half the vocabulary size) the agreement part of the
check is recorded but not applied; see `judge`.
"""

import math
from dataclasses import asdict, dataclass
from pathlib import Path

THRESHOLD = {"top1_agreement_min": 0.65, "perplexity_ratio_max": 1.50}

# Plain English prose, written for this check (no license issue), about 300 tokens.
TEXT = (
    "The city of Paris is the capital of France and its largest city. It sits on the river Seine, "
    "in the north of the country, and has been a centre of trade, learning and government for more "
    "than a thousand years. Every year millions of visitors come to see its museums, its churches "
    "and its long streets lined with cafes. The Louvre holds thousands of paintings, among them the "
    "Mona Lisa, and the Eiffel Tower, built for a world fair in 1889, is now the best known shape "
    "in the city.\n\n"
    "Water boils at one hundred degrees Celsius at sea level. When you climb a mountain, the air "
    "pressure falls, and water boils at a lower temperature, which is why cooking pasta takes longer "
    "high in the Alps. Ice melts at zero degrees, and a litre of water weighs about one kilogram.\n\n"
    "To make a cup of tea, boil fresh water, pour it over the leaves, and wait three to five minutes "
    "before you remove them. Some people add milk, some add lemon, and some prefer it plain. In many "
    "countries tea is served to guests as a sign of welcome, and the way it is made says a great deal "
    "about the family that makes it.\n\n"
    "The Earth turns once a day and goes around the Sun once a year. The Moon goes around the Earth "
    "about once a month, and its pull raises the tides of the oceans twice a day."
)


@dataclass(frozen=True)
class Fidelity:
    text_tokens: int
    top1_agreement: float
    perplexity_source: float
    perplexity_export: float
    perplexity_ratio: float
    agreement_applies: bool
    passed: bool

    def to_manifest(self) -> dict:
        return {**asdict(self), "threshold": dict(THRESHOLD)}

    def summary(self) -> str:
        return (
            f"top-1 agreement {self.top1_agreement:.3f}, perplexity {self.perplexity_source:.2f} -> "
            f"{self.perplexity_export:.2f} (ratio {self.perplexity_ratio:.3f}) over {self.text_tokens} tokens"
        )


def judge(agreement: float, ppl_source: float, ppl_export: float, vocab_size: int) -> Fidelity:
    """Apply THRESHOLD; agreement only counts when the source is better than near-uniform."""
    ratio = ppl_export / ppl_source
    agreement_applies = ppl_source < vocab_size / 2
    passed = ratio <= THRESHOLD["perplexity_ratio_max"] and (
        not agreement_applies or agreement >= THRESHOLD["top1_agreement_min"]
    )
    return Fidelity(0, agreement, ppl_source, ppl_export, ratio, agreement_applies, passed)


def _next_token_stats(logits, ids):
    """Per-position argmax and mean NLL of the actual next token (numpy, float64)."""
    import numpy as np

    logits = np.asarray(logits, dtype=np.float64)[:-1]
    targets = np.asarray(ids)[1:]
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    nll = -log_probs[np.arange(len(targets)), targets].mean()
    return logits.argmax(axis=-1), float(nll)


def source_logits(source_dir: Path, ids, trust_remote_code: bool = False):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        str(source_dir), dtype=torch.float32, trust_remote_code=trust_remote_code
    )
    with torch.inference_mode():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def export_logits(export_dir: Path, ids, trust_remote_code: bool = False):
    import torch
    from optimum.intel import OVModelForCausalLM

    model = OVModelForCausalLM.from_pretrained(
        str(export_dir), device="CPU", trust_remote_code=trust_remote_code, ov_config={"CACHE_DIR": ""}
    )
    input_ids = torch.tensor([ids])
    with torch.inference_mode():
        logits = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).logits[0]
    return torch.as_tensor(logits).float().numpy()


def measure(source_dir: Path, export_dir: Path, trust_remote_code: bool = False, text: str = TEXT) -> Fidelity:
    """Compare the exported model in `export_dir` with the float model in `source_dir`."""
    import dataclasses

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(source_dir), trust_remote_code=trust_remote_code)
    # The text as a raw prompt reaches the model: with BOS where the tokenizer adds one (Gemma's
    # file does; without it Gemma's float perplexity is 42.7 instead of 11.7, a text out of range).
    ids = tokenizer(text)["input_ids"]
    top_source, nll_source = _next_token_stats(source_logits(source_dir, ids, trust_remote_code), ids)
    top_export, nll_export = _next_token_stats(export_logits(export_dir, ids, trust_remote_code), ids)
    agreement = float((top_source == top_export).mean())
    vocab_size = len(tokenizer)
    result = judge(agreement, math.exp(nll_source), math.exp(nll_export), vocab_size)
    return dataclasses.replace(result, text_tokens=len(ids))
