"""Speculative decoding: the LLMPipeline properties that turn it on, and the draft model's check.

Two ways to guess tokens that the model then checks all in one pass: prompt lookup (the guesses
are copied from the prompt where its last n-gram matched: cheap, and right when the answer
copies the input: edits, extraction, grounded summaries) and a draft model (a smaller model
guesses: it must share the main model's tokenizer, since guesses travel as token ids). Under
greedy decoding the answer is the same as without speculation; only the speed changes.
"""

from __future__ import annotations

import openvino_genai as ov_genai

from .errors import ModelError
from .model import ModelInfo, loadable
from .options import LoadOptions


def speculative_properties(options: LoadOptions, main: ModelInfo) -> dict:
    """What LLMPipeline or ContinuousBatchingPipeline needs in its properties to speculate."""
    if options.prompt_lookup:
        return {"prompt_lookup": True}
    if not options.draft_model:
        return {}
    draft = loadable(options.draft_model)
    check_same_tokenizer(main, ov_genai.Tokenizer(str(main.path)), draft, ov_genai.Tokenizer(str(draft.path)))
    draft_properties = {k: v for k, v in options.to_properties().items() if k != "ATTENTION_BACKEND"}
    return {"draft_model": ov_genai.draft_model(str(draft.path), options.device, **draft_properties)}


def check_same_tokenizer(main: ModelInfo, main_tokenizer: ov_genai.Tokenizer,
                         draft: ModelInfo, draft_tokenizer: ov_genai.Tokenizer) -> None:
    """Refuse a draft whose vocabulary differs from the main model's: its guesses are token ids,
    and an id that means another string in the main model is a wrong guess every time."""
    main_vocab, draft_vocab = main_tokenizer.get_vocab(), draft_tokenizer.get_vocab()
    if main_vocab == draft_vocab:
        return
    differing = sorted(set(main_vocab.items()) ^ set(draft_vocab.items()), key=lambda item: (item[1], repr(item[0])))
    token, token_id = differing[0]
    token = token.decode("utf-8", "replace") if isinstance(token, bytes) else token  # genai gives bytes
    raise ModelError(
        f"The draft model {draft.path} does not share the main model's tokenizer "
        f"({len(draft_vocab)} tokens against {len(main_vocab)}; token id {token_id} is {token!r} in only one of them). "
        "A draft's guesses are token ids, so both models need the same vocabulary: "
        "pick a smaller model of the same family, or use --prompt-lookup, which needs no draft."
    )
