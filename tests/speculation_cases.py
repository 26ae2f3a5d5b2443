"""The prompts and kinds of speculation tests/test_speculative.py checks against plain greedy;
studies/speculative_ties.py reads where answers part on the same prompts."""

from pathlib import Path

GROUNDED_TEXT = (Path(__file__).parent / "texts" / "harbour_report.txt").read_text()
PROMPTS = {"grounded edit": "Copy the following text, correcting any spelling mistakes:\n\n" + GROUNDED_TEXT,
           "grounded summary": "Summarise the decisions of this meeting in a few sentences:\n\n" + GROUNDED_TEXT,
           "free chat": "Tell me about the history of sailing."}


def speculation_kinds(model) -> dict:
    """Engine.load keyword arguments of each kind of speculation; the draft is the model itself."""
    return {"prompt lookup": {"prompt_lookup": True}, "prompt lookup, batching": {"prompt_lookup": True, "batching": True},
            "draft (itself)": {"draft_model": model}}
