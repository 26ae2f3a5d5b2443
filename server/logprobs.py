"""Log-probabilities in OpenAI's shapes, from the engine's GeneratedToken records.

genai 2026.4's sampler returns one number per generated token: the chosen token's natural-log
probability under the model's raw distribution (before penalties, temperature, grammar), the
same number it computed while choosing (measured: asking it for 5 gives that same one value).
So the server gives every token's logprob, and a top-logprobs list only where it is known:
the chosen token is the model's most likely one under greedy decoding with nothing that reshapes
the distribution (GenerationOptions.picks_most_likely). Asking for more alternatives, or for the
top one where it is unknown, is a 400 that says so, never a list quietly shorter or wrong.
"""

from __future__ import annotations

from ..engine import GenerationOptions
from ..engine.results import GeneratedToken

MAX_TOP_LOGPROBS = 1  # what genai gives: the chosen token, which is the top one only when greedy


def unknown_alternatives(top_logprobs: int, options: GenerationOptions) -> str | None:
    """Why `top_logprobs` alternatives per token cannot be given honestly, or None when they can."""
    if top_logprobs > MAX_TOP_LOGPROBS:
        return (f"is {top_logprobs}, but this server can give at most {MAX_TOP_LOGPROBS}: OpenVINO GenAI 2026.4 "
                "reports only the chosen token's log-probability, not the alternatives. Ask for 1 or 0.")
    if top_logprobs == 1 and not options.picks_most_likely:
        return ("1 needs greedy decoding (temperature 0) with no penalties, response_format or tools: only "
                "then is the chosen token, whose log-probability is all the engine reports, the most likely "
                "one (penalties a request leaves out are the model's recommended ones: send repetition_penalty 1, "
                "frequency_penalty 0 and presence_penalty 0). Ask for 0 alternatives otherwise.")
    return None


def _entry(token: GeneratedToken) -> dict:
    data = token.text.encode()
    return {"token": token.text, "logprob": token.logprob, "bytes": list(data)}


def chat(tokens: tuple[GeneratedToken, ...], top_logprobs: int) -> dict:
    """A chat choice's (or chunk's) `logprobs`: {"content": [...], "refusal": None}."""
    content = []
    for token in tokens:
        entry = _entry(token)
        # With top_logprobs 1 the chosen token is the most likely one (see check()).
        entry["top_logprobs"] = [_entry(token)] if top_logprobs else []
        content.append(entry)
    return {"content": content, "refusal": None}


def completion(tokens: tuple[GeneratedToken, ...], text_offset: int = 0) -> dict:
    """A completion choice's `logprobs` (the legacy shape). The sampled token is always listed
    among its top_logprobs, as OpenAI's `logprobs: 0` gives it."""
    offsets, at = [], text_offset
    for token in tokens:
        offsets.append(at)
        at += len(token.text)
    return {"tokens": [t.text for t in tokens], "token_logprobs": [t.logprob for t in tokens],
            "top_logprobs": [{t.text: t.logprob} for t in tokens], "text_offset": offsets}


def responses(tokens: tuple[GeneratedToken, ...], top_logprobs: int) -> list[dict]:
    """The Responses API's output_text `logprobs` list."""
    return [{**_entry(t), "top_logprobs": [_entry(t)] if top_logprobs else []} for t in tokens]
