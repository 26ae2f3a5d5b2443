"""Chat templates for GGUF files that carry none, by family.

Base models (Gemma 3 270M's file) and some conversions ship without `tokenizer.chat_template`.
Where the family has one known turn format and the file's vocabulary holds its markers as
tokens, the export writes that format, says so, and records it in the manifest; otherwise the
model stays template-less and `ovchat generate` completes raw text. The templates below are the
families' turn formats reduced to their messages (no tools, no default system prompt).
"""

GEMMA = (
    "{{ bos_token }}{% if messages and messages[0]['role'] == 'system' %}"
    "{% set system = messages[0]['content'] + '\\n\\n' %}{% set turns = messages[1:] %}"
    "{% else %}{% set system = '' %}{% set turns = messages %}{% endif %}"
    "{% for m in turns %}{{ '<start_of_turn>' + ('model' if m['role'] == 'assistant' else 'user') + '\\n' }}"
    "{% if loop.first %}{{ system }}{% endif %}{{ (m['content'] | trim) + '<end_of_turn>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}")
CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
PHI3 = (
    "{% for m in messages %}{{ '<|' + m['role'] + '|>\\n' + m['content'] + '<|end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}")
LLAMA3 = (
    "{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' "
    "+ (m['content'] | trim) + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")

# name: (template, the tokens it needs in the vocabulary)
FORMATS = {
    "gemma": (GEMMA, ("<start_of_turn>", "<end_of_turn>")),
    "chatml": (CHATML, ("<|im_start|>", "<|im_end|>")),
    "phi3": (PHI3, ("<|user|>", "<|assistant|>", "<|end|>")),
    "llama3": (LLAMA3, ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")),
}
# llama.cpp architecture -> the formats its files use, most likely first (SmolLM's `llama` files are ChatML)
BY_ARCHITECTURE = {
    "gemma2": ("gemma",), "gemma3": ("gemma",), "qwen2": ("chatml",), "qwen3": ("chatml",), "phi3": ("phi3",),
    "llama": ("llama3", "chatml"),
}


def family_template(architecture: str, tokens: list) -> tuple[str, str] | None:
    """(format name, template) for a template-less file of `architecture` whose vocabulary `tokens`
    holds that format's markers, or None."""
    vocabulary = set(tokens)
    for name in BY_ARCHITECTURE.get(architecture, ()):
        template, markers = FORMATS[name]
        if vocabulary.issuperset(markers):
            return name, template
    return None
