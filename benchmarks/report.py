"""Write a report: bench.json (everything), bench.md (tables), PNG charts (matplotlib).

Figures are medians with (min–max) over repetitions. The ratios come first: ovchat's figure over
another backend's, taken within each interleaved repetition (benchmarks/pairing.py) and shown as
the median of those per-repetition ratios with their min–max.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .pairing import PAIRS
from .roofline import achieved_gbs, step_bytes
from .server_report import server_section


def write(report: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "bench.json", out / "bench.md"]
    paths[0].write_text(json.dumps(report, indent=1))
    paths[1].write_text(markdown(report))
    paths += charts(report, out)
    return paths


def _fmt(s: dict | None, digits: int = 0) -> str:
    if not s or s.get("median") is None:
        return "–"
    f = f"{{:.{digits}f}}"
    return f"{f.format(s['median'])} ({f.format(s['min'])}–{f.format(s['max'])})"


def _ok(report: dict, scenario: str) -> list[dict]:
    return [e for e in report["entries"] if e["scenario"] == scenario and e["status"] == "ok"]


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def machine_section(report: dict) -> list[str]:
    m = report["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    skipped = "; ".join(f"{d}: {r}" for d, r in report["devices"]["skipped"].items()) or "none"
    load = report.get("load_average") or {"start": m["load_average"]}
    return [f"# ovchat benchmark, {report['date']}", "",
            f"- **Machine**: {m['cpu']}, {m['physical_cores']} physical / {m['logical_cores']} logical cores, "
            f"{m['memory_gib']} GiB RAM, {m['os']}, Python {m['python']}",
            f"- **Load average** (1/5/15 min) at start {load['start']}, at end {load.get('end', '– (running)')}",
            f"- **Versions**: {versions}; ovchat {m['ovchat_commit']}",
            f"- **Devices run**: {', '.join(report['devices']['run'])}; **skipped**: {skipped}",
            f"- **Profile**: {json.dumps(report['profile'])}",
            f"- **Total time**: {report['total_seconds'] / 60:.1f} min"
            + (" — **partial report: the run was still going**" if report.get("partial") else ""), ""]


def _ratio_cell(row: dict | None) -> str:
    if not row:
        return "–"
    return f"{row['median']:.2f} ({row['min']:.2f}–{row['max']:.2f}, n={row['n']})"


def ratios_section(report: dict) -> list[str]:
    """ovchat over each other backend, paired within interleaved repetitions. < 1: ovchat is faster/smaller."""
    pairs = [f"{a}/{b}" for a, b in PAIRS]
    cells: dict[tuple, dict[str, dict]] = {}
    for row in report.get("ratios", []):
        key = (row["model"], row["device"], row["scenario"], row["figure"])
        cells.setdefault(key, {})[row["pair"]] = row
    used = [p for p in pairs if any(p in c for c in cells.values())]
    rows = [[*key, *[_ratio_cell(c.get(p)) for p in used]] for key, c in cells.items()]
    lines = ["## Ratios, paired per repetition", "",
             "ovchat's figure over the other backend's, measured in the same interleaved repetition (same "
             "prompts, same minute), then the median (min–max) over repetitions. Below 1: ovchat is faster "
             "(or smaller). ovchat/genai is our overhead on LLMPipeline and should be ≈1.00; its spread is the "
             "noise floor of this run.", ""]
    if not rows:
        return lines + ["No pair of backends measured in the same repetitions.", ""]
    return lines + _table(["model", "device", "scenario", "figure", *used], rows) + [""]


def roofline_section(report: dict) -> list[str]:
    lines = ["## Roofline", "", f"Memory read bandwidth measured in this run (every core summing a 1 GiB buffer): "
             f"**{report['bandwidth_gbs']:.1f} GB/s**. A decode step reads every weight once "
             "(the token-embedding table only when tied to the output layer), so tokens/s ≤ bandwidth / bytes.", ""]
    rows = []
    for model, info in report["models"].items():
        for fmt, r in info["roofline"].items():
            kv = r.get("kv_bytes_per_token")
            rows.append([model, fmt, f"{r['decode_bytes'] / 1e6:.0f} MB", f"{kv / 1e3:.1f} kB" if kv else "–",
                         f"{r['bound_tokens_per_s']:.1f}"])
    header = ["model", "format", "weight bytes per decode step", "KV bytes per token of context", "bound, tokens/s"]
    return lines + _table(header, rows) + [""]


def latency_section(report: dict) -> list[str]:
    lines = ["## Generation latency (greedy, EOS ignored)", "",
             "TTFT/TPOT in ms, median (min–max) over repetitions; the paired ratios are in the table above. "
             "GB/s read = bytes one decode step reads (weights + KV cache at the mean context: prompt + half "
             "the new tokens) × decode tokens/s (1000 / median TPOT); the last column sets it against the "
             f"read bandwidth measured in this run ({report['bandwidth_gbs']:.1f} GB/s).", ""]
    rows = []
    for e in _ok(report, "latency"):
        for length, s in e["data"]["summary"].items():
            tps = 1000 / s["tpot_ms"]["median"] if s["tpot_ms"]["median"] else None
            gbs = achieved_bandwidth(report, e, int(length), tps)
            rows.append([e["model"], e["device"], e["backend"], length, _fmt(s["ttft_ms"]), _fmt(s["tpot_ms"], 1),
                         _fmt(s["tokens_per_s"], 1), f"{gbs:.1f}" if gbs else "–",
                         f"{gbs / report['bandwidth_gbs']:.0%}" if gbs and report["bandwidth_gbs"] else "–"])
    header = ["model", "device", "backend", "prompt", "TTFT ms", "TPOT ms", "tokens/s", "GB/s read", "of measured"]
    return lines + _table(header, rows) + [""]


def versus_llamacpp_section(report: dict) -> list[str]:
    """Latency, ovchat beside llama.cpp per model and prompt length: both medians and the paired ratio."""
    ratios = {(r["model"], r["device"], r["figure"]): r for r in report.get("ratios", [])
              if r["scenario"] == "latency" and r["pair"] == "ovchat/llamacpp"}
    by_backend = {(e["model"], e["device"], e["backend"]): e["data"]["summary"] for e in _ok(report, "latency")}
    rows = []
    for (model, device, backend), mine in by_backend.items():
        theirs = by_backend.get((model, device, "llamacpp"))
        if backend != "ovchat" or not theirs:
            continue
        for length in (n for n in mine if n in theirs):
            cells = [model, device, length]
            for metric, figure, digits in (("ttft_ms", "TTFT", 0), ("tpot_ms", "TPOT", 1)):
                cells += [_fmt(mine[length][metric], digits), _fmt(theirs[length][metric], digits),
                          _ratio_cell(ratios.get((model, device, f"{figure} ms @{length}")))]
            rows.append(cells)
    if not rows:
        return []
    header = ["model", "device", "prompt", "TTFT ms ovchat", "TTFT ms llama.cpp", "TTFT ratio",
              "TPOT ms ovchat", "TPOT ms llama.cpp", "TPOT ratio"]
    note = ("Each model's exported folder against the GGUF it was exported from, medians (min–max); ratio = "
            "ovchat / llama.cpp paired per repetition, below 1: ovchat is faster.")
    return ["## Latency: ovchat beside llama.cpp, per model", "", note, ""] + _table(header, rows) + [""]


def achieved_bandwidth(report: dict, entry: dict, prompt_tokens: int, tokens_per_s: float | None) -> float | None:
    """GB/s `entry`'s backend read while decoding after a `prompt_tokens` prompt (None if unknown)."""
    formats = report["models"][entry["model"]]["roofline"]
    fmt = formats.get("gguf" if entry["backend"].startswith("llama") else "ir")
    if not fmt or not tokens_per_s:
        return None
    context = prompt_tokens + report.get("profile", {}).get("new_tokens", 0) // 2
    kv = formats.get("ir", {}).get("kv_bytes_per_token", 0)
    return achieved_gbs(step_bytes(fmt, context, kv), tokens_per_s)


def devices_section(report: dict) -> list[str]:
    """CPU vs GPU side by side; an absent device shows its skip reason in its column."""
    lines = ["## CPU vs GPU (TPOT ms, median)", ""]
    rows, reasons = {}, {}
    for e in report["entries"]:
        if e["scenario"] != "latency" or e["device"] not in ("CPU", "GPU"):
            continue
        if e["status"] != "ok":
            reasons[(e["model"], e["backend"], e["device"])] = f"{e['status']}: {e.get('reason', '')}"
            continue
        for length, s in e["data"]["summary"].items():
            rows.setdefault((e["model"], e["backend"], length), {})[e["device"]] = f"{s['tpot_ms']['median']:.1f}"
    for (model, backend, device), reason in reasons.items():
        keys = [k for k in rows if k[:2] == (model, backend)] or [(model, backend, "all")]
        for key in keys:
            rows.setdefault(key, {})[device] = reason
    rows = {k: {"CPU": v.get("CPU", "–"), "GPU": v.get("GPU", "–")} for k, v in rows.items()}
    table = [[m, b, n, v["CPU"], v["GPU"]] for (m, b, n), v in rows.items()]
    return lines + _table(["model", "backend", "prompt", "CPU", "GPU"], table) + [""]


def chat_section(report: dict) -> list[str]:
    entries = _ok(report, "chat")
    turns = len(entries[0]["data"]["summary"]) if entries else 0
    rows = [[e["model"], e["device"], e["backend"], *[f"{s['median']:.0f}" for s in e["data"]["summary"]],
             f"{e['data']['last_over_first']:.2f}" if e["data"]["last_over_first"] else "–"] for e in entries]
    header = ["model", "device", "backend", *[f"turn {i + 1}" for i in range(turns)], "last/first"]
    return ["## Chat: TTFT (ms, median) per turn as history grows", ""] + _table(header, rows) + [""]


def load_section(report: dict) -> list[str]:
    rows = [[e["model"], e["device"], e["backend"], _fmt(s["cold_load_ms"]), _fmt(s["warm_load_ms"]),
             _fmt(s["cold_first_token_ms"]), _fmt(s["warm_first_token_ms"]),
             "no compile cache (CACHE_DIR n/a)" if e["backend"] == "llamacpp" else ""]
            for e in _ok(report, "load") for s in [e["data"]["summary"]]]
    header = ["model", "device", "backend", "load cold ms", "load warm ms", "1st token cold ms",
              "1st token warm ms", "note"]
    note = ("Load = files read + compile. ovchat then runs its own warm-up (not counted here: `warmup_ms` "
            "in bench.json), so its first token after load is already warm.")
    return ["## Model load: cold vs warm CACHE_DIR (fresh process each)", "", note, ""] + _table(header, rows) + [""]


def memory_section(report: dict) -> list[str]:
    rows = [[e["model"], e["device"], e["backend"], f"{e['data']['rss_after_load_mb']:.0f}",
             f"{e['data'].get('rss_end_mb', 0):.0f}", f"{e['data']['peak_rss_mb']:.0f}"] for e in _ok(report, "memory")]
    header = ["model", "device", "backend", "RSS after load MB", "RSS after generation MB", "peak RSS MB"]
    note = "Peak = VmHWM over the whole process (load included); RSS after generation = what it holds then."
    return ["## Resident memory (own process, load + one generation)", "", note, ""] + _table(header, rows) + [""]


def concurrency_section(report: dict) -> list[str]:
    rows = []
    for e in _ok(report, "concurrency"):
        for hint, h in e["data"].items():
            rows.append([e["model"], e["device"], e["backend"], hint, h["requests"],
                         _fmt(h["summary"]["tokens_per_s"], 1), _fmt(h["summary"]["latency_ms"])])
    header = ["model", "device", "backend", "hint", "requests", "total tokens/s", "request latency ms"]
    note = ("ovchat serves one generation at a time (requests queue); genai and optimum take the "
            "requests as one batch.")
    return ["## Several requests at once: PERFORMANCE_HINT", "", note, ""] + _table(header, rows) + [""]


def coldstart_section(report: dict) -> list[str]:
    rows = []
    for e in _ok(report, "coldstart"):
        cells = [e["model"], e["device"], e["backend"]]
        for cache in ("cold", "warm"):
            s = e["data"][cache]["summary"]
            cells += [_fmt(s["start_to_first_token_s"], 2), _fmt(s["load_s"], 2)]
        rows.append(cells)
    if not rows:
        return []
    header = ["model", "device", "backend", "start→1st token cold s", "load cold s", "start→1st token warm s",
              "load warm s"]
    return ["## Process start to first token (issue 6, benchmarks/coldstart.py)", ""] + _table(header, rows) + [""]


def remember_section(report: dict) -> list[str]:
    rows = []
    for e in _ok(report, "remember"):
        s = e["data"]["summary"]
        tokens = s["6th turn prompt tokens (chain / whole / cold)"]
        rows.append([e["model"], e["backend"], _fmt(s["6th turn TTFT ms, previous_response_id"]),
                     _fmt(s["6th turn TTFT ms, whole chat"]), _fmt(s["6th turn TTFT ms, whole chat never seen (cold)"]),
                     _fmt(s["ratio (previous_response_id / whole)"], 2), _fmt(s["ratio (whole / cold)"], 2),
                     " / ".join(str(t) for t in tokens[0]) if tokens else "–"])
    if not rows:
        return []
    header = ["model", "backend", "6th turn TTFT ms, previous_response_id", "whole chat", "whole, never seen",
              "ratio id / whole", "ratio whole / never seen", "prompt tokens (rep 1)"]
    return ["## Responses that remember (issue 31, benchmarks/remember_scenario.py)", ""] + _table(header, rows) + [""]


def agent_loop_section(report: dict) -> list[str]:
    rows = []
    for e in _ok(report, "agent-loop"):
        s, reps = e["data"]["summary"], e["data"]["reps"]
        rows.append([e["model"], e["backend"], _fmt(s["loop ms"]), _fmt(s["turn 1 TTFT ms"]),
                     *(_fmt(s[f"turn {k} TTFT ms"]) for k in range(2, 7)),
                     " → ".join(str(t) for t in (reps[0]["prompt_tokens"][0], reps[0]["prompt_tokens"][-1]))])
    if not rows:
        return []
    header = ["model", "backend", "6-turn loop ms", "turn 1 TTFT ms", *(f"turn {k}" for k in range(2, 7)),
              "prompt tokens, turn 1 → 6"]
    return ["## Agent loop (issue 31, benchmarks/agent_loop_scenario.py)", ""] + _table(header, rows) + [""]


def skipped_section(report: dict) -> list[str]:
    """One row per (model, device, backend, reason), with the scenarios it covers."""
    groups: dict[tuple, list[str]] = {}
    for e in report["entries"]:
        if e["status"] != "ok":
            key = (e["model"], e["device"], e["backend"], e["status"], e.get("reason", "").replace("\n", " "))
            groups.setdefault(key, []).append(e["scenario"])
    rows = [[", ".join(scenarios), *key] for key, scenarios in groups.items()]
    return ["## Skipped and failed", ""] + _table(["scenarios", "model", "device", "backend", "status", "reason"],
                                                  rows) + [""]


def markdown(report: dict) -> str:
    lines = machine_section(report) + ratios_section(report) + roofline_section(report)
    for section in (latency_section, versus_llamacpp_section, devices_section, chat_section, load_section, memory_section,
                    concurrency_section, coldstart_section, server_section, remember_section, agent_loop_section,
                    skipped_section):
        lines += section(report)
    return "\n".join(lines)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def charts(report: dict, out: Path) -> list[Path]:
    """One PNG per model: TTFT and TPOT by prompt length per backend, and chat TTFT per turn."""
    try:
        import matplotlib
    except ImportError:
        return []
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    paths = []
    for model in report["models"]:
        lat = [e for e in _ok(report, "latency") if e["model"] == model]
        chat = [e for e in _ok(report, "chat") if e["model"] == model]
        if not lat and not chat:
            continue
        fig, axes = plt.subplots(1, 3, figsize=(15, 4))
        for e in lat:
            label = f"{e['backend']} {e['device']}"
            lengths = list(e["data"]["summary"])
            for ax, metric in zip(axes[:2], ("ttft_ms", "tpot_ms")):
                ax.plot([int(n) for n in lengths], [e["data"]["summary"][n][metric]["median"] for n in lengths],
                        marker="o", label=label)
        for e in chat:
            ax = axes[2]
            ax.plot(range(1, len(e["data"]["summary"]) + 1), [s["median"] for s in e["data"]["summary"]],
                    marker="o", label=f"{e['backend']} {e['device']}")
        for ax, title, xlabel in zip(axes, ("TTFT ms", "TPOT ms", "chat TTFT ms per turn"),
                                     ("prompt tokens", "prompt tokens", "turn")):
            ax.set_title(title)
            ax.set_xlabel(xlabel)
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=8)
        axes[0].set_xscale("log")
        axes[1].set_xscale("log")
        fig.suptitle(f"{model}: {report['machine']['cpu']}, {report['date'][:10]}")
        fig.tight_layout()
        path = out / f"{_slug(model)}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths
