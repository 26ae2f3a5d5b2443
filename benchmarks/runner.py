"""Run the scenarios over models x devices x backends and collect one report dict.

For each scenario and device, the backends are interleaved: repetition 1 runs A B C D, the
next B C D A, and so on (benchmarks/pairing.py), every backend's repetition in its own worker
process (benchmarks/worker.py) with a timeout, so all backends see the same machine load and
ovchat's ratios to the others are paired within a repetition. An absent device, an uninstalled
backend or a model format a backend can't read becomes a "skipped" entry with the reason, a
failing measurement an "error" entry (that backend's later repetitions are dropped): the run goes on.
"""

from __future__ import annotations

import datetime
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from . import roofline
from .backends import BACKENDS, MAIN_BACKENDS, ModelFiles, unavailable
from .child import run_once
from .machine import load_average, machine_info
from .pairing import paired_ratios, rotation
from .registry import SCENARIOS
from .scenarios import Profile, Skip, WorkerError

DEVICES = ("CPU", "GPU", "NPU")
PHI3 = "phi3-mini-shaped"


@dataclass
class Context:
    profile: Profile
    out: Path
    log_name: str = "worker"

    def spawn(self, job: dict) -> dict:
        """Run one job in a fresh `python -m ovchat.benchmarks.worker` process; its data or WorkerError."""
        return run_once("ovchat.benchmarks.worker", job, self.profile.timeout_s, self.out / "logs" / f"{self.log_name}.log")


def resolve_model(name: str, build: bool = True) -> ModelFiles:
    """`default`, `phi3-mini-shaped[-int4]` (built on first use), a named real model such as
    `gemma3-270m` (`ovchat export`ed on first use: benchmarks/named_export.py), an IR folder or a .gguf file.

    An IR folder exported from a GGUF (its ovchat.json names the source) runs on llama.cpp as that GGUF."""
    if name == "default":
        from .. import engine
        ir = engine.default_model_dir()
        gguf = engine.cache_root() / "sources" / "SmolLM2-135M-Instruct.Q4_1.gguf"  # tools/default_model.py
        return ModelFiles("default (SmolLM2-135M)", str(ir) if (ir / "openvino_model.xml").exists() else None,
                          str(gguf) if gguf.exists() else None)
    if name.startswith(PHI3):
        from . import phi3_shaped
        if name in phi3_shaped.VARIANTS:
            variant = phi3_shaped.VARIANTS[name]
            label = f"{name} (random)" if name.endswith("-tiny") else f"{name} (3.8B, random)"
            if build:
                return ModelFiles(label, str(phi3_shaped.ensure_ir(variant.shape, name, recipe=variant.recipe)),
                                  str(phi3_shaped.ensure_gguf(variant.shape, variant.gguf_name)))
            ir, gguf = phi3_shaped.ir_dir(name), phi3_shaped.gguf_path(variant.gguf_name)
            return ModelFiles(label, str(ir) if ir.exists() else None, str(gguf) if gguf.exists() else None)
    path = Path(name).expanduser()
    from . import named_export
    if name in named_export.NAMED and not path.exists():  # a folder of that name in the current directory wins
        return named_export.model_files(name, build)
    if path.suffix == ".gguf":
        return ModelFiles(path.name, None, str(path))
    return ModelFiles(path.name, str(path), _source_gguf(path))


def _source_gguf(folder: Path) -> str | None:
    try:
        source = json.loads((folder / "ovchat.json").read_text())["source"]["path"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return source if source.endswith(".gguf") and Path(source).is_file() else None


def device_plan(requested: list[str] | None) -> tuple[list[str], dict[str, str]]:
    """(devices to run, {absent device: reason}). Default: every present one of CPU, GPU, NPU."""
    from .. import engine
    present = engine.available_devices()
    wanted = requested or [d for d in DEVICES if d in present] or ["CPU"]
    absent = {d: f"OpenVINO finds no {d} device on this machine (devices: {', '.join(present)})"
              for d in (requested or DEVICES) if d not in present}
    return [d for d in wanted if d in present], absent


def model_roofline(files: ModelFiles, bandwidth_gbs: float) -> dict:
    out = {}
    for fmt, path, count in (("ir", files.ir, roofline.ir_decode_bytes), ("gguf", files.gguf, roofline.gguf_decode_bytes)):
        if path:
            info = count(path)
            out[fmt] = dict(info, bound_tokens_per_s=roofline.bound(bandwidth_gbs, info["decode_bytes"]))
    return out


def run(models: list[str], devices: list[str] | None, backends: list[str] | None, scenarios: list[str] | None,
        profile: Profile, out: Path, log=print, on_entry=None) -> dict:
    """The report dict; `on_entry(report)` is called after every measured repetition (partial reports)."""
    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    run_devices, absent = device_plan(devices)
    backends = backends or list(BACKENDS)
    scenarios = scenarios or [name for name, scenario in SCENARIOS.items() if not scenario.by_name_only]
    bandwidth = roofline.memory_bandwidth_gbs()
    log(f"[bench] memory bandwidth {bandwidth:.1f} GB/s; devices {run_devices}, absent {list(absent)}")
    report = {"schema": 2, "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
              "machine": machine_info(), "load_average": {"start": load_average()}, "profile": asdict(profile),
              "bandwidth_gbs": bandwidth, "devices": {"run": run_devices, "skipped": absent}, "models": {},
              "entries": [], "ratios": []}

    def progress():
        report["total_seconds"] = round(time.monotonic() - started, 1)
        if on_entry:
            on_entry(report)

    for model in models:
        files = resolve_model(model)
        report["models"][files.name] = {"files": asdict(files), "roofline": model_roofline(files, bandwidth)}
        for scenario_name in scenarios:
            for device in run_devices + list(absent):
                run_interleaved(report, SCENARIOS[scenario_name], files, device, backends, absent,
                                Context(profile, out), log, progress)
    report["load_average"]["end"] = load_average()
    report["total_seconds"] = round(time.monotonic() - started, 1)
    return report


def run_interleaved(report: dict, scenario, files: ModelFiles, device: str, backends: list[str],
                    absent: dict, ctx: Context, log, progress) -> None:
    """One scenario on one device: entries for every backend, repetitions in rotating order,
    then the ratios paired within each repetition appended to report["ratios"]."""
    entries, runnable = {}, []
    for backend in backends:
        if backend not in MAIN_BACKENDS and backend not in scenario.backends:
            continue  # an extra backend (genai-pa) appears only in the scenarios that ask for it
        entry = {"scenario": scenario.name, "model": files.name, "device": device, "backend": backend}
        report["entries"].append(entry)
        entries[backend] = entry
        reason = absent.get(device) or unavailable(backend, files, device)
        if not reason and backend not in scenario.backends:
            reason = f"{scenario.name} does not apply to {backend}"
        if reason:
            entry.update(status="skipped", reason=reason)
        else:
            entry.update(status="pending", seconds=0.0, reps=[])
            runnable.append(backend)
    reps = scenario.reps(ctx.profile)
    for rep in range(reps):
        order = [b for b in rotation(runnable, rep) if entries[b]["status"] in ("pending", "ok")]
        for position, backend in enumerate(order):
            entry = entries[backend]
            ctx.log_name = f"{scenario.name}-{backend}-{device}"
            log(f"[bench] {scenario.name} / {files.name} / {device} / rep {rep + 1}/{reps} / {backend} ...")
            begin = time.monotonic()
            try:
                data = scenario.run_rep(ctx, files, device, backend, rep)
            except (Skip, WorkerError) as error:
                entry.update(status="skipped" if isinstance(error, Skip) else "error", reason=str(error))
                data = None
            seconds = time.monotonic() - begin
            entry["seconds"] = round(entry["seconds"] + seconds, 1)
            if data is not None:
                entry["reps"].append(dict(data, rep=rep, position=position))
                entry.update(status="ok", data=scenario.summarize(entry["reps"]))
            log(f"[bench]   {entry['status']} in {seconds:.1f} s {entry.get('reason', '')}")
            progress()
    figures = {b: {r["rep"]: scenario.figures(r) for r in entries[b]["reps"]}
               for b in runnable if entries[b]["status"] == "ok"}
    report["ratios"] += paired_ratios(figures, {"scenario": scenario.name, "model": files.name, "device": device})
    for entry in entries.values():  # the summaries keep the samples; keep where each repetition ran
        reps_run = entry.pop("reps", [])
        if reps_run:
            entry["positions"] = [{"rep": r["rep"], "position": r["position"]} for r in reps_run]
    progress()
