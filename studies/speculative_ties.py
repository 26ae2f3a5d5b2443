"""Where a speculative greedy answer parts from plain greedy, is it a near-tie?

`python -m studies.speculative_ties [--properties JSON]` generates each of
tests/test_speculative.py's prompts with plain greedy on PagedAttention and with each kind of
speculation, then for every answer that parts, reads the plain model's logits at the parting
token (one forward pass of the IR over prompt + common answer, ov.Core, same properties) and
prints the two tokens, their logits, and the answer's median top-two margin. A wrong
speculation would take a token far below the model's first choice; rounding takes its second.

Measured on this project's 2-core AMD machine (default properties, bf16): every parting token was
the plain model's 1st or 2nd choice, 0-0.375 logits apart, against median margins of 1.25-1.56.
With {"INFERENCE_PRECISION_HINT": "f32", "DYNAMIC_QUANTIZATION_GROUP_SIZE": "0"} no answer parts.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from tests.speculation_cases import PROMPTS, speculation_kinds

from .decode_parts import GENAI_ONLY

def next_token_logits(compiled, ids) -> np.ndarray:
    """Logits predicting each next token of `ids`, from one stateful forward pass."""
    request = compiled.create_infer_request()
    ids = np.asarray([ids], dtype=np.int64)
    request.infer({"input_ids": ids, "attention_mask": np.ones_like(ids),
                   "position_ids": np.arange(ids.shape[1], dtype=np.int64)[None], "beam_idx": np.zeros(1, np.int32)})
    return request.get_tensor("logits").data[0].astype(np.float64)


def parting(tokenizer, compiled, prompt_ids, plain_text, other_text) -> dict:
    plain, other = (tokenizer.encode(t, add_special_tokens=False) for t in (plain_text, other_text))
    k = next(i for i in range(min(len(plain), len(other))) if plain[i] != other[i])
    rows = next_token_logits(compiled, prompt_ids + plain)[len(prompt_ids) - 1:][:len(plain)]
    top_two = np.sort(rows, axis=-1)[:, -2:]
    row = rows[k]
    return {"token": k, "of": len(plain), "plain": tokenizer.decode([plain[k]]), "speculative": tokenizer.decode([other[k]]),
            "logit_plain": row[plain[k]], "logit_speculative": row[other[k]],
            "rank_of_speculative": int((row > row[other[k]]).sum()),
            "median_top_two_margin": float(np.median(top_two[:, 1] - top_two[:, 0])),
            "round_trip": tokenizer.decode(plain) == plain_text and tokenizer.decode(other) == other_text}


def main(argv=None) -> int:
    from ovchat.engine import Engine, GenerationOptions
    from ovchat.engine.devices import core
    from ovchat.engine.paths import default_model_dir
    from ovchat.engine.prompt import prepare

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="exported model folder (default: the default model)")
    parser.add_argument("--properties", type=json.loads, default={}, help='e.g. {"INFERENCE_PRECISION_HINT": "f32"}')
    args = parser.parse_args(argv)
    model = args.model or default_model_dir()
    greedy = GenerationOptions(max_new_tokens=96)
    plain_engine = Engine.load(model, ATTENTION_BACKEND="PA", **args.properties)
    tokenizer = plain_engine.tokenizer
    plain = {name: plain_engine.generate(prompt, greedy).text for name, prompt in PROMPTS.items()}
    plain_engine.close()
    compiled = core().compile_model(str(Path(model) / "openvino_model.xml"), "CPU",
                                    {k: v for k, v in args.properties.items() if k not in GENAI_ONLY})
    for kind, kwargs in speculation_kinds(model).items():
        engine = Engine.load(model, **kwargs, **args.properties)
        for name, prompt in PROMPTS.items():
            text = engine.generate(prompt, greedy).text
            if text == plain[name]:
                print(f"{kind} / {name}: equal")
                continue
            ids = tokenizer.encode(prepare(prompt, greedy, tokenizer, None).text, add_special_tokens=False)
            print(f"{kind} / {name}: parts", json.dumps(parting(tokenizer, compiled, ids, plain[name], text)))
        engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
