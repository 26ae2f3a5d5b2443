"""What tests/test_deterministic.py and studies/deterministic.py ask a deterministic engine: 16
questions, two chats of three turns behind a system prompt, and the ways of asking them (one at
a time, all at once, chats alone or interleaved turn by turn)."""

from __future__ import annotations

import threading

QUESTIONS = [
    "What is the capital of France?", "What is the capital of Japan?", "Name three primary colours.",
    "Why is the sky blue?", "What is the chemical symbol for water?", "Who wrote Romeo and Juliet?",
    "Explain photosynthesis in one sentence.", "What is 12 times 12?", "Which planet is known as the Red Planet?",
    "Give me a tip for sleeping better.", "What is the tallest mountain on Earth?", "Who painted the Mona Lisa?",
    "What does a compiler do?", "Describe a cat in two sentences.", "What is the boiling point of water?",
    "Write a haiku about autumn.",
]
CHAT_TURNS = [["Hello! Who are you?", "What can you help me with?", "Tell me a fun fact about octopuses."],
              ["I want to learn to cook.", "What should I cook first?", "How long does rice take?"]]
SYSTEM = ("You are a helpful AI assistant. Answer clearly and briefly. Prefer short sentences. "
          "If you do not know something, say so. Never invent facts.")


def options(tokens: int, **extra):
    from ovchat.engine import GenerationOptions
    return GenerationOptions(max_new_tokens=tokens, **extra)


def one_at_a_time(engine, prompts, tokens: int) -> list[str]:
    return [engine.generate(p, options(tokens)).text for p in prompts]


def all_at_once(engine, prompts, tokens: int) -> list[str]:
    answers = [None] * len(prompts)
    start = threading.Barrier(len(prompts))

    def ask(i):
        start.wait()
        answers[i] = engine.generate(prompts[i], options(tokens)).text
    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def chats(engine, tokens: int, interleaved: bool) -> list[str]:
    """Every answer of the CHAT_TURNS chats: one chat after the other, or both at once, turn by turn."""
    sessions = [engine.chat(SYSTEM, options(tokens)) for _ in CHAT_TURNS]
    answers = [[None] * len(turns) for turns in CHAT_TURNS]
    if not interleaved:
        for c, turns in enumerate(CHAT_TURNS):
            for t, text in enumerate(turns):
                answers[c][t] = sessions[c].send(text).text
        return [a for chat in answers for a in chat]
    for t in range(len(CHAT_TURNS[0])):
        threads = [threading.Thread(target=lambda c=c: answers[c].__setitem__(t, sessions[c].send(CHAT_TURNS[c][t]).text))
                   for c in range(len(CHAT_TURNS))]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    return [a for chat in answers for a in chat]


def with_system(prompts):
    return [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": p}] for p in prompts]
