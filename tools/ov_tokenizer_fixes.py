"""Two departures of openvino_tokenizers from the tokenizer.json it converts, undone in the models it
wrote (openvino_tokenizer.xml, openvino_detokenizer.xml). Both are in a BPE vocabulary with byte
fallback, SentencePiece's (Llama 2, Mistral, Phi-3, Gemma); tests/test_gguf_tokenizer_parity.py
measures them against llama.cpp, docs/export.md has the figures.

  encode  Its BPETokenizer starts from the longest vocabulary tokens that no merge makes, not from
          single characters, so the text "<0x0A>" (a byte token's name, which no merge makes) came
          out as that byte token. In the tokenizer's vocabulary each byte token's name becomes its
          byte: the longest match then takes a character byte by byte exactly where the character
          has no token of its own, which is byte fallback, and no text matches a name any more.
          Where the byte's character has a token, that token wins and the byte token is never
          produced (by llama.cpp or `tokenizers` either): its name becomes a string no text holds.
  decode  Its ByteFallback step decodes any six-byte token "<....>" as if it were a byte token
          "<0xNN>" (Gemma's "</div>" came out as "\ufffd"). Tokens that start with "<" and are no
          byte token get a mark in front before that step; the mark is taken out of the decoded
          text once it is valid UTF-8. The detokenizer's vocabulary (genai's get_vocab()) is kept.

The departures that depend on the tokenizer.json are avoided where it is written
(tools/gguf_tokenizer.py). `apply(folder)` is idempotent and leaves any other tokenizer as it is.
"""

import re
from pathlib import Path

import numpy as np

_BYTE_NAME = re.compile(rb"<0x([0-9A-F]{2})>")
_NOT_IN_TEXT = b"\xff"  # never in UTF-8: a name behind it matches no text
_MARKS = [chr(c) for c in range(0xFDD0, 0xFDF0)]  # Unicode noncharacters: no text to hold them


def apply(folder: Path) -> list:
    """Fix the openvino_tokenizers models in `folder` in place; the names of the fixes made."""
    import openvino as ov
    import openvino_tokenizers  # noqa: F401  (registers the tokenizer operations)

    done = []
    core = ov.Core()
    for name, fix in (("openvino_tokenizer", _fix_encoder), ("openvino_detokenizer", _fix_decoder)):
        xml = Path(folder) / f"{name}.xml"
        if not xml.is_file():
            continue
        model = core.read_model(xml)
        if not fix(model):
            continue
        model.validate_nodes_and_infer_types()
        staged = xml.with_name(f"staged_{name}.xml")   # save_model wants an .xml name
        ov.save_model(model, str(staged), compress_to_fp16=False)
        del model
        staged.replace(xml)
        staged.with_suffix(".bin").replace(xml.with_suffix(".bin"))
        done.append(fix.__name__[5:])
    return done


def _fix_encoder(model) -> bool:
    changed = False
    for node in model.get_ordered_ops():
        if node.get_type_name() != "BPETokenizer" or not node.get_attributes().get("byte_fallback"):
            continue
        vocab = _strings(node, 5)
        present = set(vocab)
        renamed = [_byte_as_text(token, present) for token in vocab]
        if renamed != vocab:
            _set_strings(node, 5, renamed)
            changed = True
    return changed


def _byte_as_text(token: bytes, present: set) -> bytes:
    match = _BYTE_NAME.fullmatch(token)
    if not match:
        return token
    byte = bytes([int(match.group(1), 16)])
    return _NOT_IN_TEXT + token if byte in present else byte


def _fix_decoder(model) -> bool:
    ops = {node.get_type_name(): node for node in model.get_ordered_ops()}
    fallback, vocab, valid = ops.get("ByteFallback"), ops.get("VocabDecoder"), ops.get("UTF8Validate")
    if fallback is None or vocab is None or valid is None:
        return False
    source = fallback.input_value(0).get_node()
    if source.get_type_name() == "RegexNormalization" and any(m.encode() in _constant_bytes(source, 4) for m in _MARKS):
        return False  # fixed already
    tokens = _strings(vocab, 1)
    mark = next(m for m in _MARKS if not any(m.encode() in token for token in tokens))
    marked = _regex([fallback.input_value(k) for k in range(3)], r"^<(?!0x[0-9A-F]{2}>$)", mark + "<")
    for k, output in enumerate(marked):
        fallback.input(k).replace_source_output(output)
    readers = [list(valid.output(k).get_target_inputs()) for k in range(3)]
    unmarked = _regex([valid.output(k) for k in range(3)], mark, "")
    for inputs, output in zip(readers, unmarked):
        for target in inputs:
            target.replace_source_output(output)
    return True


def _regex(strings: list, search: str, replace: str) -> list:
    from openvino_tokenizers import _get_factory

    patterns = [_string_constant(search), _string_constant(replace)]
    return _get_factory().create("RegexNormalization", [*strings, *patterns], {"global_replace": True}).outputs()


def _string_constant(text: str):
    import openvino.opset14 as opset

    return opset.constant(np.frombuffer(text.encode(), dtype=np.uint8).copy()).output(0)


def _constant_bytes(node, index: int) -> bytes:
    source = node.input_value(index).get_node()
    return source.get_data().tobytes() if source.get_type_name() == "Constant" else b""


def _strings(node, first: int) -> list:
    """The strings of a node's (begins, ends, chars) constant inputs from `first` on."""
    begins, ends, chars = (node.input_value(first + k).get_node().get_data() for k in range(3))
    data = chars.tobytes()
    return [data[begin:end] for begin, end in zip(begins, ends)]


def _set_strings(node, first: int, strings: list) -> None:
    import openvino.opset14 as opset

    ends = np.cumsum([len(s) for s in strings], dtype=np.int64).astype(np.int32)
    begins = np.concatenate([[0], ends[:-1]]).astype(np.int32)
    chars = np.frombuffer(b"".join(strings), dtype=np.uint8).copy()
    for k, values in enumerate((begins, ends, chars)):
        node.input(first + k).replace_source_output(opset.constant(values).output(0))
