"""A Phi-3-mini-shaped model with random weights, for benchmarking at the seed's scale.

The seed ran Phi-3-mini-4k-instruct (3.8B); its weights can't be fetched here, and decode speed
does not depend on the weights' values, only on their shapes and formats. This module builds:

  <cache>/bench/phi3-mini-shaped/              OpenVINO IR exported with the seed's exact recipe
                                               (int4, group size 128, ratio 0.6, sym) + tokenizer
  <cache>/bench/phi3-mini-shaped.Q4_0.gguf     the same shape for llama.cpp (llama architecture)
  <cache>/bench/phi3-mini-shaped-int4/         the same shape exported all-int4 (ratio 1.0, group 128,
                                               sym): `ovchat export --preset int4`'s format, data-free
                                               (calibrating random weights would mean nothing, and
                                               decode speed depends only on the format); its llama.cpp
                                               counterpart is the same Q4_0 GGUF
  <cache>/bench/phi3-mini-shaped-int4-all/     the same with the output layer int4 too (--all-layers)

`<cache>` is `engine.cache_root()` ($OVCHAT_CACHE or ~/.cache/ovchat). Both are created once,
atomically (a tmp path renamed into place), under an exclusive lock file, because one build needs
~11 GB of RAM and this is a 24 GiB machine shared with other processes. Others may call
`ensure_ir()` / `ensure_gguf()`, or run `python -m ovchat.benchmarks.phi3_shaped`.

The tokenizer is synthetic (a byte-fallback BPE over generated pieces, ids < 32000, Phi-3's
special tokens at 32000+): text works end to end, and speed runs use token ids anyway.
"""

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

NAME = "phi3-mini-shaped"
# The seed's export recipe, verbatim (group size 128 divides hidden 3072).
EXPORT_RECIPE = ["--task", "text-generation-with-past", "--weight-format", "int4",
                 "--group-size", "128", "--ratio", "0.6", "--sym"]
# The `int4` preset's format (tools/recipe.py PRESETS): every layer int4.
INT4_RECIPE = [*EXPORT_RECIPE[:EXPORT_RECIPE.index("--ratio")], "--ratio", "1.0", "--sym"]
PHI3_SPECIAL = ["<|endoftext|>", "<|assistant|>", "<|placeholder1|>", "<|placeholder2|>",
                "<|placeholder3|>", "<|placeholder4|>", "<|system|>", "<|end|>",
                "<|placeholder5|>", "<|placeholder6|>", "<|user|>"]
PHI3_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] "
    "+ '<|end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}"
    "{% endif %}")


@dataclass(frozen=True)
class Shape:
    """The transformer's dimensions; `phi3_mini()` is the seed's model."""
    layers: int = 32
    hidden: int = 3072
    intermediate: int = 8192
    heads: int = 32
    kv_heads: int = 32
    vocab: int = 32064
    spm_vocab: int = 32000
    context: int = 4096


PHI3_MINI = Shape()
TINY = Shape(layers=2, hidden=256, intermediate=512, heads=4, kv_heads=4)  # for tests


@dataclass(frozen=True)
class Variant:
    """One buildable model: its shape, its IR's export recipe, and the GGUF llama.cpp runs beside it."""
    shape: Shape
    recipe: tuple
    gguf_name: str


VARIANTS = {
    NAME: Variant(PHI3_MINI, tuple(EXPORT_RECIPE), NAME),
    NAME + "-tiny": Variant(TINY, tuple(EXPORT_RECIPE), NAME + "-tiny"),
    NAME + "-int4": Variant(PHI3_MINI, tuple(INT4_RECIPE), NAME),
    NAME + "-int4-all": Variant(PHI3_MINI, (*INT4_RECIPE, "--all-layers"), NAME),
}


def bench_dir() -> Path:
    try:
        from ..engine import cache_root
    except ImportError:  # engine's public surface not landed yet: same rule as engine/paths.py
        from ..engine.paths import cache_root
    return cache_root() / "bench"


def ir_dir(name: str = NAME) -> Path:
    return bench_dir() / name


def gguf_path(name: str = NAME) -> Path:
    return bench_dir() / f"{name}.Q4_0.gguf"


@contextlib.contextmanager
def build_lock(name: str = NAME):
    """Exclusive lock: only one process builds the big model at a time (RAM)."""
    bench_dir().mkdir(parents=True, exist_ok=True)
    with open(bench_dir() / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def vocabulary(shape: Shape) -> tuple[list[str], list[tuple[str, str]]]:
    """Pieces in id order and the BPE merges that produce them, deterministic.

    <unk> <s> </s>, the 256 <0xNN> byte tokens, base characters, then pieces merged from them
    ('▁a', 'ab', '▁ab', 'abc', ...) until `spm_vocab` entries."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    base = list("▁" + letters + letters.upper() + "0123456789.,;:!?'\"-()")
    pieces = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + base
    merges: list[tuple[str, str]] = []
    known = set(pieces)

    def add(left: str, right: str) -> bool:
        if len(pieces) >= shape.spm_vocab:
            return False
        piece = left + right
        if piece not in known:
            known.add(piece)
            pieces.append(piece)
            merges.append((left, right))
        return True

    for c in letters:
        add("▁", c)
    for a in letters:
        for b in letters:
            add(a, b)
    for a in letters:
        for b in letters:
            add("▁" + a, b)
    for stem in [a + b for a in letters for b in letters]:
        for c in letters:
            if not add(stem, c):
                return pieces, merges
    for stem in ["▁" + a + b for a in letters for b in letters]:
        for c in letters:
            if not add(stem, c):
                return pieces, merges
    return pieces, merges


def write_tokenizer(folder: Path, shape: Shape) -> None:
    """A Llama-style byte-fallback BPE tokenizer (tokenizer.json) with Phi-3's special tokens."""
    from tokenizers import Tokenizer, decoders, normalizers
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast

    pieces, merges = vocabulary(shape)
    model = BPE(vocab={p: i for i, p in enumerate(pieces)}, merges=merges, unk_token="<unk>",
                byte_fallback=True, fuse_unk=True)
    tok = Tokenizer(model)
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"),
                                           normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                     decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="<|endoftext|>",
                                   unk_token="<unk>", pad_token="<|endoftext|>")
    fast.add_special_tokens({"additional_special_tokens": PHI3_SPECIAL[1:]})
    fast.chat_template = PHI3_CHAT_TEMPLATE
    fast.save_pretrained(folder)


def hf_config(shape: Shape):
    from transformers import Phi3Config
    return Phi3Config(vocab_size=shape.vocab, hidden_size=shape.hidden,
                      intermediate_size=shape.intermediate, num_hidden_layers=shape.layers,
                      num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads,
                      max_position_embeddings=shape.context, bos_token_id=1,
                      eos_token_id=[32000, 32007], pad_token_id=32000, tie_word_embeddings=False)


def build_hf(folder: Path, shape: Shape) -> None:
    """Random bf16 Phi-3 checkpoint + tokenizer in `folder` (the export's input)."""
    import torch
    from transformers import Phi3ForCausalLM
    torch.manual_seed(0)
    model = Phi3ForCausalLM._from_config(hf_config(shape), torch_dtype=torch.bfloat16)
    model.generation_config.eos_token_id = [32000, 32007]
    model.save_pretrained(folder)
    del model
    write_tokenizer(folder, shape)


def export_ir(hf_folder: Path, out: Path, recipe=EXPORT_RECIPE) -> None:
    """The seed's recipe (or `recipe`), through optimum-cli exactly as the seed ran it."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    cli = Path(sys.executable).with_name("optimum-cli")
    cmd = [str(cli), "export", "openvino", "--model", str(hf_folder), *recipe, str(out)]
    subprocess.run(cmd, check=True, env=env)


def ensure_ir(shape: Shape = PHI3_MINI, name: str = NAME, log=lambda m: print(m, file=sys.stderr, flush=True),
              recipe=EXPORT_RECIPE) -> Path:
    """The exported IR folder, building it (once, under the lock) if absent."""
    final = ir_dir(name)
    if (final / "openvino_model.xml").exists():
        return final
    with build_lock(name):
        if (final / "openvino_model.xml").exists():
            return final
        tmp = final.with_name(final.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        start = time.monotonic()
        log(f"[phi3-shaped] building random {name} checkpoint {asdict(shape)}")
        build_hf(tmp / "hf", shape)
        log(f"[phi3-shaped] exporting with {' '.join(recipe)} ({time.monotonic() - start:.0f} s)")
        export_ir(tmp / "hf", tmp / "ir", recipe)
        (tmp / "ir" / "phi3_shaped.json").write_text(json.dumps(
            {"shape": asdict(shape), "recipe": list(recipe), "random_weights": True}, indent=1))
        os.replace(tmp / "ir", final)
        shutil.rmtree(tmp, ignore_errors=True)
        log(f"[phi3-shaped] IR ready in {time.monotonic() - start:.0f} s: {final}")
    return final


def write_gguf(path: Path, shape: Shape) -> None:
    """A llama-architecture GGUF, Q4_0 matrices with random nibbles, SPM vocabulary.

    general.name avoids "phi3": llama.cpp would then look up <|endoftext|> and fail to load."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("random-3.8b-shaped")
    writer.add_context_length(shape.context)
    writer.add_embedding_length(shape.hidden)
    writer.add_block_count(shape.layers)
    writer.add_feed_forward_length(shape.intermediate)
    writer.add_head_count(shape.heads)
    writer.add_head_count_kv(shape.kv_heads)
    writer.add_rope_dimension_count(shape.hidden // shape.heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_0)
    _add_vocab(writer, shape)

    def q4_0(name: str, rows: int, cols: int) -> None:
        blocks = rng.integers(0, 256, size=(rows, cols // 32, 18), dtype=np.uint8)
        blocks[:, :, :2] = np.frombuffer(np.float16(0.002).tobytes(), dtype=np.uint8)
        writer.add_tensor(name, blocks.reshape(rows, -1), raw_dtype=gguf.GGMLQuantizationType.Q4_0)

    def norm(name: str) -> None:
        writer.add_tensor(name, np.ones(shape.hidden, dtype=np.float32))

    h, kv = shape.hidden, shape.hidden // shape.heads * shape.kv_heads
    q4_0("token_embd.weight", shape.vocab, h)
    for i in range(shape.layers):
        norm(f"blk.{i}.attn_norm.weight")
        q4_0(f"blk.{i}.attn_q.weight", h, h)
        q4_0(f"blk.{i}.attn_k.weight", kv, h)
        q4_0(f"blk.{i}.attn_v.weight", kv, h)
        q4_0(f"blk.{i}.attn_output.weight", h, h)
        norm(f"blk.{i}.ffn_norm.weight")
        q4_0(f"blk.{i}.ffn_gate.weight", shape.intermediate, h)
        q4_0(f"blk.{i}.ffn_up.weight", shape.intermediate, h)
        q4_0(f"blk.{i}.ffn_down.weight", h, shape.intermediate)
    norm("output_norm.weight")
    q4_0("output.weight", shape.vocab, h)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _add_vocab(writer, shape: Shape) -> None:
    import gguf
    pieces, _ = vocabulary(shape)
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    types += [gguf.TokenType.BYTE] * 256 + [gguf.TokenType.NORMAL] * (len(pieces) - 259)
    scores = [0.0] * 259 + [-float(i) for i in range(len(pieces) - 259)]
    extra = PHI3_SPECIAL + [f"[PAD{i}]" for i in range(shape.vocab - len(pieces) - len(PHI3_SPECIAL))]
    pieces = pieces + extra
    types += [gguf.TokenType.CONTROL] * len(PHI3_SPECIAL)
    types += [gguf.TokenType.UNUSED] * (len(extra) - len(PHI3_SPECIAL))
    scores += [0.0] * len(extra)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(pieces)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(32000)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_chat_template(PHI3_CHAT_TEMPLATE)


def ensure_gguf(shape: Shape = PHI3_MINI, name: str = NAME, log=lambda m: print(m, file=sys.stderr, flush=True)) -> Path:
    """The GGUF file, writing it (once, under the lock) if absent."""
    final = gguf_path(name)
    if final.exists():
        return final
    with build_lock(name):
        if final.exists():
            return final
        tmp = final.with_name(final.name + ".tmp")
        start = time.monotonic()
        log(f"[phi3-shaped] writing {final.name}")
        write_gguf(tmp, shape)
        os.replace(tmp, final)
        log(f"[phi3-shaped] GGUF ready in {time.monotonic() - start:.0f} s: {final}")
    return final


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ovchat.benchmarks.phi3_shaped",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("what", nargs="*", help="ir, gguf or both (default)")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer model of the same kind")
    parser.add_argument("--int4", action="store_true", help="the IR all-int4 (the int4 preset's format)")
    parser.add_argument("--all-layers", action="store_true", help="with --int4: the output layer int4 too")
    args = parser.parse_args(argv)
    what = set(args.what or ["ir", "gguf"])
    if what - {"ir", "gguf"}:
        parser.error("choose among: ir, gguf")
    if args.tiny:
        name = NAME + "-tiny"
    elif args.int4:
        name = NAME + ("-int4-all" if args.all_layers else "-int4")
    else:
        name = NAME
    variant = VARIANTS[name]
    if "gguf" in what:
        print(ensure_gguf(variant.shape, variant.gguf_name))
    if "ir" in what:
        print(ensure_ir(variant.shape, name, recipe=variant.recipe))
    return 0


if __name__ == "__main__":
    sys.exit(main())
