"""The server scenario's part of bench.md, and its headline against issue 11's targets.

Headline figures are paired within interleaved repetitions (benchmarks/pairing.py) and shown as
speed-ups: aggregate tokens/s of `ovchat serve` over each other backend's at the largest
concurrency (the inverse of the paired "ms per token (1/aggregate)" ratio), and `ovchat generate
--server`'s process start to first token over llama.cpp's fresh process (coldstart scenario).
"""

from __future__ import annotations

TARGETS = {"ovchat-single": 4.0, "llama-server": 1.0}   # aggregate tokens/s at 16 streams, at least
CLIENT_TARGET = 0.5                                      # start->first token vs llama.cpp, at most
LABELS = {"ovchat": "ovchat serve (in process)", "llamacpp": "llama_cpp.server", "llama-server": "llama-server --parallel C",
          "ovchat-single": "engine one at a time (in process)", "ovchat-process": "ovchat serve, engine process"}


def _fmt(s: dict | None, digits: int = 0) -> str:
    if not s or s.get("median") is None:
        return "–"
    f = f"{{:.{digits}f}}"
    if s["n"] == 1:
        return f.format(s["median"])
    return f"{f.format(s['median'])} ({f.format(s['min'])}–{f.format(s['max'])})"


def headline(report: dict) -> list[dict]:
    """One row per (model, comparison): the median (min–max) speed-up or ratio, n, the target, met or not."""
    rows = []
    top = {}
    for row in report.get("ratios", []):
        if row["scenario"] == "server" and row["figure"].startswith("ms per token (1/aggregate)"):
            streams = int(row["figure"].rsplit(", ", 1)[1].split()[0])
            top[row["model"]] = max(top.get(row["model"], 0), streams)
    for row in report.get("ratios", []):
        if row["scenario"] == "server" and row["figure"].startswith("ms per token (1/aggregate)"):
            streams = int(row["figure"].rsplit(", ", 1)[1].split()[0])
            other = row["pair"].split("/")[1]
            if streams != top[row["model"]]:
                continue
            target = TARGETS.get(other) if streams >= 16 else None
            speedup = 1 / row["median"]
            rows.append({"model": row["model"], "figure": f"aggregate tokens/s, ovchat serve ÷ {LABELS.get(other, other)}, "
                         + row["figure"].split(", ", 1)[1], "value": round(speedup, 2),
                         "min": round(1 / row["max"], 2), "max": round(1 / row["min"], 2), "n": row["n"],
                         "target": f">= {target}" if target else None,
                         "met": None if target is None else speedup >= target})
        elif row["scenario"] == "coldstart" and row["pair"] == "ovchat-client/llamacpp":
            rows.append({"model": row["model"], "figure": f"{row['figure']}: ovchat generate --server ÷ llama.cpp fresh process",
                         "value": round(row["median"], 2), "min": round(row["min"], 2), "max": round(row["max"], 2),
                         "n": row["n"], "target": f"<= {CLIENT_TARGET}", "met": row["median"] <= CLIENT_TARGET})
    return rows


def server_section(report: dict) -> list[str]:
    entries = [e for e in report["entries"] if e["scenario"] == "server" and e["status"] == "ok"]
    head = headline(report)
    if not entries and not head:
        return []
    lines = ["## Servers under concurrent streams (issue 11)", "",
             "Streaming `/v1/chat/completions`, greedy, fresh prompts (random words; prompt tokens as the server "
             "counted them), C streams each sending requests back to back. TTFT = request sent → first content "
             "chunk (queueing included); TPOT = (last − first content chunk) / (tokens − 1); aggregate = all output "
             "tokens / wall time. Median (min–max) over repetitions; p99 is per repetition.", ""]
    if head:
        lines += ["**Headline** (paired within repetitions; speed-ups > 1 favour ovchat):", ""]
        lines += ["| model | figure | value (min–max, n) | target | met |", "|---|---|---|---|---|"]
        lines += [f"| {h['model']} | {h['figure']} | {h['value']:.2f} ({h['min']:.2f}–{h['max']:.2f}, n={h['n']}) | "
                  f"{h['target'] or '–'} | {'–' if h['met'] is None else ('yes' if h['met'] else 'no')} |" for h in head]
        lines.append("")
    header = ["model", "server", "prompt tok", "streams", "requests (failed)", "TTFT p50 ms", "TTFT p99 ms",
              "TPOT p50 ms", "aggregate tokens/s", "tokens/request", "EOS ignored"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for e in entries:
        for s in e["data"]["summary"].values():
            prompt = f"{s['prompt_tokens']:.0f}" if s["prompt_tokens"] else f"~{s['prompt_target_tokens']}"
            lines.append("| " + " | ".join(str(c) for c in (
                e["model"], LABELS.get(e["backend"], e["backend"]), prompt, s["concurrency"],
                f"{s['requests']} ({s['failed']})", _fmt(s["ttft_ms_p50"]), _fmt(s["ttft_ms_p99"]), _fmt(s["tpot_ms_p50"], 1),
                _fmt(s["aggregate_tokens_per_s"], 1),
                f"{s['output_tokens_per_request']:.0f}" if s["output_tokens_per_request"] else "–",
                "yes" if s["eos_ignored"] else "no")) + " |")
    return lines + [""]
