"""SafeTextStreamer (engine/text_streamer.py) on the tiny random Phi-3's tokenizer: random token
sequences, streamed one token at a time, join to exactly the whole sequence's decoded text, also
where genai's own TextStreamer hands Python a chunk cut inside a UTF-8 sequence and raises."""

import random

import openvino_genai as ov_genai

from ovchat.engine.text_streamer import SafeTextStreamer

RUNNING = ov_genai.StreamingStatus.RUNNING


def stream_pieces(streamer_class, tokenizer, ids) -> list[str]:
    pieces = []
    streamer = streamer_class(tokenizer, lambda text: (pieces.append(text), RUNNING)[1])
    for token in ids:
        streamer.write([token])
    streamer.end()
    return pieces


def native_breaks(tokenizer, ids) -> bool:
    try:
        stream_pieces(ov_genai.TextStreamer, tokenizer, ids)
    except UnicodeDecodeError:
        return True
    return False


def test_random_tokens_stream_to_the_whole_decoded_text(tiny_phi3_dir):
    tokenizer = ov_genai.Tokenizer(str(tiny_phi3_dir))
    vocab = len(tokenizer.get_vocab())
    rng = random.Random(0)
    sequences = [[rng.randrange(vocab) for _ in range(60)] for _ in range(200)]
    broken = [ids for ids in sequences if native_breaks(tokenizer, ids)]
    assert broken, "no sequence broke genai's TextStreamer: this test no longer covers the fallback"
    for ids in sequences:
        assert "".join(stream_pieces(SafeTextStreamer, tokenizer, ids)) == tokenizer.decode(ids)
