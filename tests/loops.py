"""Whether an answer ends in a loop of a repeated sentence or run of words: how the demo's test
(tests/test_generation_defaults.py) and the decoding study behind its default (studies/decoding_defaults.py)
tell an answer that reads well from one that repeats itself."""

import re


def sentences(text: str) -> list[str]:
    """The text's sentences, normalised: lower case, inner spaces collapsed, end marks and list
    numbers dropped (so "1. Tea 2. Tea 3. Tea" is one sentence said three times)."""
    parts = (" ".join(p.lower().strip(" .!?*-#").split()) for p in re.split(r"(?<=[.!?])\s+|\n+", text))
    return [p for p in parts if p and not p.isdigit()]


def words(text: str) -> list[str]:
    """The text's words, lower case, numbers and punctuation dropped."""
    return re.findall(r"[a-z']+", text.lower())


def ends_in_loop(text: str, cut_off: bool = False, min_repeats: int = 3, max_period: int = 3) -> bool:
    """Whether the text ends in one sentence, or a block of up to `max_period` sentences, said
    `min_repeats` times in a row, or in a run of words said over and over with no sentence end
    between them ("it's worth saying that it's worth saying that ..."). `cut_off`: the token
    limit ended it, so an unfinished last sentence (or repeat) is ignored."""
    said = sentences(text)
    if cut_off and said and not re.search(r"[.!?]\s*$", text):
        said = said[:-1]
    for period in range(1, max_period + 1):
        tail = said[-period * min_repeats:]
        if len(tail) == period * min_repeats and all(tail[i] == tail[i % period] for i in range(len(tail))):
            return True
    return ends_in_word_loop(text, cut_off, min_repeats)


def ends_in_word_loop(text: str, cut_off: bool = False, min_repeats: int = 3, min_span: int = 12,
                      max_period: int = 40) -> bool:
    """Whether the text's last words are a block of up to `max_period` words said `min_repeats`
    times in a row, and at least `min_span` words in all (so "ha ha ha" is not a loop). The
    sentence test misses such a loop when no sentence ends inside it."""
    said = words(text)
    for period in range(1, max_period + 1):
        span = period * max(min_repeats, -(-min_span // period))
        for trim in range(period if cut_off else 1):  # cut off: the last repeat may be unfinished
            end = len(said) - trim
            tail = said[end - span:end]
            if end - span >= 0 and all(tail[i] == tail[i % period] for i in range(span)):
                return True
    return False
