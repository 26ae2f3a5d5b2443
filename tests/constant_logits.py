"""A causal-LM-shaped model whose logits are the same constants at every step, on a real
model's tokenizer: it shows exactly what genai's sampler does to logits (penalties) without
any weights (tests/test_decoding_rule.py, studies/penalties.py)."""

from __future__ import annotations

import tempfile
from pathlib import Path


def constant_logits_pipeline(tokenizer_dir: Path, values: dict[int, float], others: float = -20.0):
    """An LLMPipeline (SDPA, CPU) whose every step's logits are `values` (token id -> logit),
    `others` for every other token."""
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops
    import openvino_genai as ov_genai

    tokenizer = ov_genai.Tokenizer(str(tokenizer_dir))
    vocab = len(tokenizer.get_vocab())
    row = np.full(vocab, others, dtype=np.float32)
    for token, logit in values.items():
        row[token] = logit
    inputs = [ops.parameter([-1, -1], ov.Type.i64, name=n) for n in ("input_ids", "attention_mask", "position_ids")]
    beam_idx = ops.parameter([-1], ov.Type.i32, name="beam_idx")
    shape = ops.concat([ops.shape_of(inputs[0]), ops.constant(np.array([vocab], dtype=np.int64))], 0)
    logits = ops.broadcast(ops.constant(row), shape)
    logits.output(0).get_tensor().set_names({"logits"})
    with tempfile.TemporaryDirectory(prefix="ovchat-") as folder:
        xml = Path(folder) / "constant.xml"
        ov.save_model(ov.Model([logits], [*inputs, beam_idx], "constant_logits"), xml, compress_to_fp16=False)
        weights = ov.Tensor(np.fromfile(xml.with_suffix(".bin"), dtype=np.uint8))
        return ov_genai.LLMPipeline(xml.read_text(), weights, tokenizer, "CPU", None, ATTENTION_BACKEND="SDPA")


def greedy_tokens(pipeline, prompt_ids: list[int], new_tokens: int = 4, **penalties) -> list[int]:
    """The token ids greedy decoding picks after `prompt_ids`, with these GenerationConfig fields."""
    import numpy as np
    import openvino as ov
    import openvino_genai as ov_genai

    config = ov_genai.GenerationConfig()
    config.max_new_tokens = new_tokens
    for name, value in penalties.items():
        setattr(config, name, value)
    return list(pipeline.generate(ov.Tensor(np.array([prompt_ids], dtype=np.int64)), config).tokens[0])
