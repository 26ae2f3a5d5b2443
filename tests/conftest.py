"""Session fixtures: real exported models, built once and cached on disk.

tiny_phi3_dir      a tiny random Phi-3 (Phi-3 chat template, <|end|> as a stop token) built here
                   with no hub access and exported with the seed's recipe through `tools.export`.
tiny_phi3_end_dir  the same, forced to answer <|end|> first: its final norm is zeroed, so every
                   logit is exactly 0 and greedy picks the lowest id, which is <|end|>'s here.
default_model_dir  the embedded default model, exported by `ovchat export default` on first use.

Both live under $OVCHAT_CACHE (default ~/.cache/ovchat): test-models/<name>-<version>/.
Bump TINY_PHI3_VERSION whenever the tiny model's recipe below changes.

Tiers: a test that uses one of these fixtures (directly or through another fixture) is marked
`slow`, and `default_model` too when it needs the default model, here at collection: nobody has
to remember the marker. A test marked `default_model` or `named_model` is `slow` too. `pytest -m "not slow"` is the fast tier: fakes, no model, seconds.
"""

import os
import shutil
from pathlib import Path

import pytest

# Ray clusters the tests start (tests/test_ray_serve.py) speak over the loopback only: Ray reads
# this when it is imported, and on Linux would otherwise use the machine's outward address.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

TINY_PHI3_VERSION = "v3"  # v3: the manifest records keep_gguf (the GGUF preset)
PHI3_SPECIAL_TOKENS = ["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
PHI3_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)
_CORPUS = [
    "The quick brown fox jumps over the lazy dog. What is the capital of France? Paris is.",
    "Hello, world! Bonjour, ça va? Numbers: 0 1 2 3 4 5 6 7 8 9, 42 and 3.14.",
    "You are a helpful AI assistant. Can you introduce yourself?\nSure, I can.",
]


MODEL_FIXTURES = ("default_model_dir", "tiny_phi3_source", "tiny_phi3_dir", "tiny_phi3_end_dir")


def pytest_collection_modifyitems(items):
    for item in items:
        needs = set(MODEL_FIXTURES) & set(getattr(item, "fixturenames", ()))  # the fixture closure
        if "default_model_dir" in needs and not item.get_closest_marker("default_model"):
            item.add_marker(pytest.mark.default_model)
        heavy = item.get_closest_marker("default_model") or item.get_closest_marker("named_model")
        if (needs or heavy) and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)


def _models_root() -> Path:
    from ovchat.engine import cache_root

    return cache_root() / "test-models"


def build_tiny_phi3_source(out: Path, hidden: int = 128, intermediate: int = 256, forced_end: bool = False) -> None:
    """A random Phi-3 in `out`; by default hidden 128, intermediate 256: the recipe's group 128 fits.
    `forced_end`: <|end|> gets id 0 and the final norm is zeroed, so greedy always answers <|end|>."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GenerationConfig, Phi3Config, Phi3ForCausalLM, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    special = ["<|end|>"] + [t for t in PHI3_SPECIAL_TOKENS if t != "<|end|>"] if forced_end else PHI3_SPECIAL_TOKENS
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(_CORPUS * 4, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>", unk_token="<|endoftext|>", clean_up_tokenization_spaces=False)
    fast.chat_template = PHI3_CHAT_TEMPLATE
    ids = {token: fast.convert_tokens_to_ids(token) for token in PHI3_SPECIAL_TOKENS}
    config = Phi3Config(
        vocab_size=len(fast), hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, max_position_embeddings=2048, original_max_position_embeddings=2048,
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|endoftext|>"], pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = Phi3ForCausalLM(config).eval()
    if forced_end:
        with torch.no_grad():
            model.model.norm.weight.zero_()
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"], eos_token_id=[ids["<|endoftext|>"], ids["<|end|>"]],
        pad_token_id=ids["<|endoftext|>"],
    )
    model.save_pretrained(str(out))
    fast.save_pretrained(str(out))


def _build_once(final: Path, build) -> Path:
    """Run build(staging) unless `final` is already there; rename so a crash leaves nothing."""
    if final.exists():
        return final
    staging = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        build(staging)
        staging.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


@pytest.fixture(scope="session")
def tiny_phi3_source() -> Path:
    root = _models_root()
    root.mkdir(parents=True, exist_ok=True)
    return _build_once(root / f"tiny-phi3-hf-{TINY_PHI3_VERSION}", build_tiny_phi3_source)


@pytest.fixture(scope="session")
def tiny_phi3_dir(tiny_phi3_source) -> Path:
    from ovchat.tools.export import export, is_valid_export

    out = _models_root() / f"tiny-phi3-ov-{TINY_PHI3_VERSION}"
    if not is_valid_export(out):
        export(tiny_phi3_source, out, force=True)
    return out


@pytest.fixture(scope="session")
def tiny_phi3_end_dir() -> Path:
    from ovchat.tools.export import export, is_valid_export

    root = _models_root()
    root.mkdir(parents=True, exist_ok=True)
    source = _build_once(root / f"tiny-phi3-end-hf-{TINY_PHI3_VERSION}",
                         lambda out: build_tiny_phi3_source(out, forced_end=True))
    out = root / f"tiny-phi3-end-ov-{TINY_PHI3_VERSION}"
    if not is_valid_export(out):
        export(source, out, force=True, check=False)
    return out


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    from ovchat.tools import default_model

    return default_model.ensure()

