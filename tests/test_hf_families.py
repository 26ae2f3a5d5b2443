"""The architecture matrix of Hugging Face exports: a tiny random model per family, built here from
its transformers config (no hub), with a tokenizer trained here and the family's chat template as
test data (their tool-call markers as the real templates have them), exported with the seed's
recipe through `tools.export` (hidden 128: group 128 fits every layer), loaded, asked for a few
tokens, and asked with a tool offered: the engine reads the tool-call format from the template.

optimum-intel 2.2 accepts gemma2 and gemma3 only with transformers <= 5.0; tools/optimum_cli.py lifts
that ceiling, and the Gemma models here have an 8-token sliding window so that the test of the lift
(an fp32 export against torch's logits) and the generation run past it."""

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

VERSION = "v2"  # bump when a recipe below changes: cached models are rebuilt
CORPUS = ["The quick brown fox jumps over the lazy dog. What is the capital of France? Paris is.",
          "Hello, world! Numbers: 0 1 2 3 4 5 6 7 8 9, 42 and 3.14. get_weather city Paris",
          "You are a helpful AI assistant. Can you introduce yourself?\nSure, I can."]
CHATML_TOOLS = (
    "{% if tools %}<|im_start|>system\n<tools>{% for t in tools %}{{ t | tojson }}{% endfor %}</tools>\nAnswer with "
    "<tool_call>{\"name\": ..., \"arguments\": ...}</tool_call><|im_end|>\n{% endif %}"
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
LLAMA3_TOOLS = (
    "{{ bos_token }}{% if tools %}<|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\n"
    "{% for t in tools %}{{ t | tojson }}{% endfor %}<|eot_id|>{% endif %}{% for m in messages %}"
    "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' + m['content'] + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
MISTRAL_TOOLS = (
    "{{ bos_token }}{% if tools %}[AVAILABLE_TOOLS]{{ tools | tojson }}[/AVAILABLE_TOOLS]{% endif %}"
    "{% for m in messages %}{% if m['role'] == 'user' %}{{ '[INST] ' + m['content'] + '[/INST]' }}"
    "{% elif m.tool_calls %}{{ '[TOOL_CALLS]' + m.tool_calls | tojson + eos_token }}"
    "{% else %}{{ m['content'] + eos_token }}{% endif %}{% endfor %}")
PHI3 = ("{% for m in messages %}{{ '<|' + m['role'] + '|>\n' + m['content'] + '<|end|>\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}")
GEMMA = ("{{ bos_token }}{% for m in messages %}{{ '<start_of_turn>' + ('model' if m['role'] == 'assistant' "
         "else m['role']) + '\n' + m['content'] + '<end_of_turn>\n' }}{% endfor %}"
         "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}")
# family: (config class, extra config fields, template, special tokens (bos, eos, others), tool format)
FAMILIES = {
    "llama": ("LlamaConfig", {}, LLAMA3_TOOLS, ("<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>",
                                               "<|end_header_id|>", "<|python_tag|>"), "llama3_json"),
    "mistral": ("MistralConfig", {"sliding_window": None}, MISTRAL_TOOLS,
                ("<s>", "</s>", "[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]"), "mistral"),
    "qwen2": ("Qwen2Config", {}, CHATML_TOOLS, ("<|endoftext|>", "<|im_end|>", "<|im_start|>"), "hermes"),
    "qwen3": ("Qwen3Config", {"head_dim": 32}, CHATML_TOOLS, ("<|endoftext|>", "<|im_end|>", "<|im_start|>"), "hermes"),
    "phi3": ("Phi3Config", {"original_max_position_embeddings": 2048}, PHI3,
             ("<|endoftext|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"), "hermes"),
    "gemma2": ("Gemma2Config", {"head_dim": 32, "sliding_window": 8}, GEMMA, ("<bos>", "<end_of_turn>", "<start_of_turn>", "<eos>"), "hermes"),
    "gemma3": ("Gemma3TextConfig", {"head_dim": 32, "sliding_window": 8, "num_hidden_layers": 6}, GEMMA, ("<bos>", "<end_of_turn>", "<start_of_turn>", "<eos>"),
               "hermes"),
}
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def build(family: str, out: Path) -> None:
    """A random `family` model with hidden size 128 and a 512-token BPE tokenizer, into `out`."""
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoModelForCausalLM, GenerationConfig, PreTrainedTokenizerFast

    config_class, extra, template, specials, _ = FAMILIES[family]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=list(specials),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(CORPUS * 4, trainer)
    bos, eos = specials[0], specials[1]
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=bos, eos_token=eos, pad_token=bos,
                                   unk_token=bos, clean_up_tokenization_spaces=False)
    fast.chat_template = template
    ids = {token: fast.convert_tokens_to_ids(token) for token in specials}
    config = getattr(transformers, config_class)(
        **{"vocab_size": len(fast), "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
           "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 2048, "bos_token_id": ids[bos],
           "eos_token_id": ids[eos], "pad_token_id": ids[bos], "tie_word_embeddings": False, **extra})
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    model.generation_config = GenerationConfig(bos_token_id=ids[bos], eos_token_id=ids[eos], pad_token_id=ids[bos])
    model.save_pretrained(str(out))
    fast.save_pretrained(str(out))


@pytest.fixture(scope="module")
def exported(request):
    """(family, exported folder or the ExportError that refused it)."""
    from conftest import _build_once, _models_root
    from ovchat.tools.export import ExportError, export, is_valid_export

    family = request.param
    root = _models_root()
    root.mkdir(parents=True, exist_ok=True)
    source = _build_once(root / f"hf-{family}-{VERSION}", lambda out: build(family, out))
    out = root / f"hf-{family}-{VERSION}-ov"
    if not is_valid_export(out):
        try:
            export(source, out, force=True)
        except ExportError as refused:
            return family, refused
    return family, out


def test_a_model_type_optimum_intel_refuses_is_refused_in_one_line_naming_the_versions():
    from ovchat.tools.gguf_convert import model_type_unexportable

    message = model_type_unexportable("gemma3n_text")  # inherits Gemma 3's ceiling, which stays for it
    assert "\n" not in message and "exports 'gemma3n_text' only with transformers" in message
    assert "<= 5.0 (installed: 5." in message and "cannot be exported with this install" in message


@pytest.mark.parametrize("family", ["gemma2", "gemma3"])
def test_the_lifted_gemma_export_gives_torchs_logits_past_the_sliding_window(family, tmp_path):
    """The lift's evidence: `python -m ovchat.tools.optimum_cli` exports fp32; its stateful graph,
    fed a 24-token prompt then 16 tokens one at a time (40 > the 8-token window; Gemma 3's layer 6
    is global), gives torch's logits."""
    import subprocess
    import sys

    import numpy as np
    import openvino as ov
    import torch
    from conftest import _build_once, _models_root
    from transformers import AutoModelForCausalLM

    source = _build_once(_models_root() / f"hf-{family}-{VERSION}", lambda out: build(family, out))
    subprocess.run([sys.executable, "-m", "ovchat.tools.optimum_cli", "export", "openvino", "--model", str(source),
                    "--task", "text-generation-with-past", "--weight-format", "fp32", str(tmp_path)],
                   check=True, capture_output=True)
    model = AutoModelForCausalLM.from_pretrained(str(source), dtype=torch.float32).eval()
    ids = torch.randint(4, model.config.vocab_size, (1, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(ids).logits[0].numpy()
    compiled = ov.Core().compile_model(tmp_path / "openvino_model.xml", "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()

    def run(start, end):
        return request.infer({"input_ids": ids[:, start:end].numpy(), "attention_mask": np.ones((1, end), np.int64),
                              "position_ids": np.arange(start, end)[None], "beam_idx": np.zeros(1, np.int32)})["logits"][0]

    got = np.concatenate([run(0, 24)] + [run(i, i + 1) for i in range(24, 40)])
    cosines = (expected * got).sum(-1) / np.linalg.norm(expected, axis=-1) / np.linalg.norm(got, axis=-1)
    assert cosines.min() > 0.9999 and (expected.argmax(-1) == got.argmax(-1)).all()


@pytest.mark.parametrize("exported", list(FAMILIES), indirect=True)
def test_a_family_exports_with_the_seeds_recipe_loads_generates_and_reads_its_tool_format(exported):
    from ovchat import engine
    from ovchat.engine.prompt import prepare

    family, out = exported
    if isinstance(out, Exception):
        pytest.skip(f"{family}: not exportable with this install: {out}")
    recipe = json.loads((out / "ovchat.json").read_text())["recipe"]
    assert (recipe["preset"], recipe["weight_format"], recipe["group_size"], recipe["ratio"]) == ("seed", "int4", 128, 0.6)
    model = engine.Engine.load(out, device="CPU")
    assert model.tokenizer.chat_template == FAMILIES[family][2]
    result = model.generate("Hello", engine.GenerationOptions(max_new_tokens=4, ignore_eos=True))
    assert result.output_tokens == 4 and result.finish_reason == "length"
    options = engine.GenerationOptions(max_new_tokens=4, tools=[WEATHER])
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    assert prepare(messages, options, model.tokenizer, model.info.context_length).tool_format == FAMILIES[family][4]
    answer = model.generate(messages, options)
    assert 1 <= answer.output_tokens <= 4
