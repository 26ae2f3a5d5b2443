"""Tokens to text pieces for a stream: genai's native TextStreamer, made safe for any token sequence.

genai's TextStreamer decodes incrementally and can hand its callback a chunk cut inside a UTF-8
sequence; Python cannot turn that chunk into a str, so the write raises UnicodeDecodeError
(measured with the tiny random Phi-3: 6 of 200 random 60-token sequences; a batching request of
1,500 tokens failed that way). Decoding a whole sequence never fails: the exported detokenizer
replaces invalid bytes. So the native streamer does the work (it is cheap), and from the first
broken chunk on, this request's text is made here: its new tokens decoded after a few tokens of
context, passed on once they end in a whole character. `texts_after` is that windowed decode
for anyone (the batching runner's per-token texts use it too).
"""

from __future__ import annotations

import functools

import openvino_genai as ov_genai

CONTEXT_TOKENS = 4    # tokens decoded before the new ones: a word's leading space, a character's first bytes
_MAX_HELD_TOKENS = 8  # an unfinished character is waited for this long, then passed on as U+FFFD


class SafeTextStreamer:
    """The same `write(ids)` / `end()` as ov_genai.TextStreamer, calling `callback(text)`."""

    def __init__(self, tokenizer: ov_genai.Tokenizer, callback):
        self._tokenizer, self._callback = tokenizer, callback
        # Not a bound method: the native streamer would hold this object in a cycle through native
        # code that Python's collector cannot see, and with it the caller's request.
        self._sent = [0]      # characters the native streamer passed on (until the switch)
        self._native = ov_genai.TextStreamer(tokenizer, functools.partial(_counted, self._sent, callback))
        self._ids: list[int] = []
        self._done = 0        # tokens whose text has been passed on (after the switch)
        self._resync = False  # the first pass after the switch: decode all, pass on what was not sent

    def write(self, ids) -> ov_genai.StreamingStatus:
        ids = list(ids) if isinstance(ids, (list, tuple)) else [int(ids)]
        self._ids += ids
        if self._native is not None:
            try:
                return self._native.write(ids)
            except UnicodeDecodeError:  # its state is past the broken chunk: carry on here
                self._native, self._resync = None, True
        return self._pass_on(final=False)

    def end(self) -> None:
        if self._native is not None:
            try:
                return self._native.end()
            except UnicodeDecodeError:
                self._native, self._resync = None, True
        self._pass_on(final=True)

    def _pass_on(self, final: bool) -> ov_genai.StreamingStatus:
        if self._resync:  # what the native streamer sent is the start of the whole text
            whole = self._tokenizer.decode(self._ids)
            head = whole[:self._sent[0]]
        else:
            start = max(0, self._done - CONTEXT_TOKENS)
            (head, whole), = _decoded_pairs(self._tokenizer, [(self._ids[start:self._done], self._ids[self._done:])])
        if whole.endswith("\ufffd") and not final and len(self._ids) - self._done < _MAX_HELD_TOKENS:
            return ov_genai.StreamingStatus.RUNNING  # the rest of a character may come with the next token
        self._done, self._resync = len(self._ids), False
        text = _added(head, whole)
        return self._callback(text) if text else ov_genai.StreamingStatus.RUNNING


def _counted(sent: list, callback, text: str) -> ov_genai.StreamingStatus:
    sent[0] += len(text)
    return callback(text)


def texts_after(tokenizer: ov_genai.Tokenizer, pairs: list[tuple[list[int], list[int]]]) -> list[str]:
    """For each (context, new) pair of token ids, the text `new` adds after `context` (a few
    tokens: decoded alone, a SentencePiece token loses its leading space, and part of a
    character decodes to U+FFFD, which then belongs to the token that completes it)."""
    return [_added(head.rstrip("\ufffd"), whole.rstrip("\ufffd")) for head, whole in _decoded_pairs(tokenizer, pairs)]


def _decoded_pairs(tokenizer: ov_genai.Tokenizer, pairs: list) -> list[tuple[str, str]]:
    """(decoded context, decoded context + new) per pair, in one decode call."""
    sequences = []
    for context, new in pairs:
        sequences += [list(context), list(context) + list(new)] if context else [list(new)]
    decoded = iter(tokenizer.decode(sequences))
    return [(next(decoded) if context else "", next(decoded)) for context, _ in pairs]


def _added(head: str, whole: str) -> str:
    return whole[len(head):] if whole.startswith(head) else whole
