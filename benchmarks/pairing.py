"""Interleaved repetitions, the ratios paired within them, and the median/min/max every figure is
reported as (`stats`): the statistics of `ovchat bench` and of the studies, in one place.

Backends of a scenario run in a rotating order, one repetition at a time (rep 1: A B C D,
rep 2: B C D A, ...), so a change in the machine's load hits every backend of a repetition
alike. A ratio is then taken inside each repetition (ovchat's figure over the other backend's,
same prompts, same minute) and reported as the median of those per-repetition ratios with their
min–max: the noise that moves both backends cancels, the noise left shows in the spread.
"""

from __future__ import annotations

import statistics

PAIRS = (("ovchat", "genai"), ("ovchat", "llamacpp"), ("ovchat", "optimum"), ("ovchat", "genai-pa"),
         ("ovchat", "llama-server"), ("ovchat", "ovchat-single"), ("ovchat", "ovchat-process"),
         ("ovchat-client", "llamacpp"), ("ovchat-process", "llama-server"))


def rotation(backends: list[str], rep: int) -> list[str]:
    """The order of repetition `rep` (0-based): the list rotated left by `rep`."""
    if not backends:
        return []
    shift = rep % len(backends)
    return backends[shift:] + backends[:shift]


def stats(values) -> dict:
    """Median, min, max and count of the values (None skipped)."""
    values = [float(v) for v in values if v is not None]
    if not values:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def paired(mine: list, theirs: list) -> dict:
    """`stats` of mine[r] / theirs[r], repetition by repetition (a missing or zero figure is no pair)."""
    return stats(a / b for a, b in zip(mine, theirs) if a is not None and b)


def paired_ratios(figures_by_backend: dict[str, dict[int, dict[str, float]]], context: dict) -> list[dict]:
    """One row per (pair, figure) present in both backends: per-repetition ratios and their
    median/min/max. `figures_by_backend[backend][rep]` = {figure name: value, lower is better}."""
    rows = []
    for mine, theirs in PAIRS:
        a, b = figures_by_backend.get(mine, {}), figures_by_backend.get(theirs, {})
        common = sorted(set(a) & set(b))
        if not common:
            continue
        for figure in a[common[0]]:
            per_rep = [a[r][figure] / b[r][figure] for r in common
                       if figure in b[r] and a[r].get(figure) and b[r][figure]]
            if per_rep:
                rows.append(dict(context, pair=f"{mine}/{theirs}", figure=figure, per_rep=per_rep, **stats(per_rep)))
    return rows
