"""The decoding a request gets for what it leaves out: one rule for the engine's users, the CLI
(`ovchat generate/chat/demo`) and the server (every route), so one model decodes one way.

    options = recommended_options(engine.info.generation_defaults, json_object=True, max_new_tokens=64)

A field the request gives is honoured as given, whatever it is (None counts as left out). A
field it leaves out takes the model's recommended value (`ModelInfo.generation_defaults`: its
generation_config.json, else DEFAULT_DECODING below), with one exception: an answer held to a
shape gets no penalty it did not ask for. Structured output (json_schema, json_object, regex,
grammar) and tool calls (tools offered, guided or not) copy the prompt's words into the answer
(a name, a city) and repeat their own syntax (quotes, keys): a penalty there made the default
model write `{"name": ""` for Paris and `"city": ""` in a weather call (issue 31). genai applies
one GenerationConfig to a whole answer, so with tools offered the text around the calls goes
without the penalty too.

What genai 2026.4 penalises (its sampling/logit_processor.hpp, and measured on a model whose
logits are constants, studies/penalties.py): `repetition_penalty` every token of the prompt and
of the answer so far (the logit divided by it, or multiplied when negative), `frequency_penalty`
and `presence_penalty` only the answer's own tokens (subtracted per occurrence / once). So the
measured default for a model that states none uses those two only: the question's own words
are never weighed against.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    from .options import GenerationOptions

# For a model whose generation_config.json states no decoding (the default model, any GGUF).
# Measured on the default model (studies/decoding_defaults.py, 2026-12-07; docs/decoding.md): no
# answer of 40 ends in a loop (greedy 14), 4/20 run to the 256-token limit (greedy 13), as the
# previous default (repetition 1.1 + frequency 0.2, which weighed on the prompt's words too);
# short questions right in the first sentence 14/20 against its 15/20 (greedy 14/20).
DEFAULT_DECODING = {"frequency_penalty": 0.5, "presence_penalty": 0.5}
# Each penalty's value that turns it off.
NO_PENALTY = {"repetition_penalty": 1.0, "frequency_penalty": 0.0, "presence_penalty": 0.0}


def recommended_options(defaults: Mapping, **given) -> "GenerationOptions":
    """GenerationOptions from `given` (GenerationOptions' fields), each field left out (or None)
    taken from `defaults` (a model's recommended decoding: ModelInfo.generation_defaults), except
    the penalties of an answer held to a shape (GenerationOptions.shaped): those stay off unless
    given. `recommended_options({}, ...)` is `GenerationOptions(...)`. Raises OptionsError as
    GenerationOptions does."""
    from .options import GenerationOptions

    given = {name: value for name, value in given.items() if value is not None}
    options = GenerationOptions(**{**defaults, **given})
    if not options.shaped:
        return options
    taken = {name: off for name, off in NO_PENALTY.items() if name not in given and getattr(options, name) != off}
    return replace(options, **taken) if taken else options
