"""Export recipes on the default model: fidelity, bytes per token and export time (issue 14).

    python -m studies.export_presets                      # every variant
    python -m studies.export_presets --variant int4-awq   # one (repeatable)

Each variant exports the default model's GGUF (tools/default_model.py) into
<cache>/bench/presets/<variant> with `tools.export.export` (no check there), then measures
fidelity against one float conversion of the same GGUF (tools/fidelity.py: top-1 agreement and
perplexity ratio on its text, which the calibration text does not contain) and the bytes a
decode step reads (roofline.ir_decode_bytes). Results are merged into OUT/presets.json, one
entry per variant, so variants can be run one at a time; prints a table, ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from ovchat.benchmarks import roofline
from ovchat.benchmarks.machine import load_average, machine_info

RESULTS = Path(__file__).parent / "results" / "2026-12-01-export-presets"


def variants() -> dict:
    from ovchat.tools.recipe import PRESETS, Recipe

    int4 = PRESETS["int4"]
    return {
        "seed": PRESETS["seed"],
        "int4": int4,
        "int4-awq-only": Recipe(ratio=1.0, awq=True, preset="int4-awq-only"),
        "int4-se-only": Recipe(ratio=1.0, scale_estimation=True, preset="int4-se-only"),
        "int4-awq": PRESETS["int4-awq"],
        "int4-gptq": Recipe(ratio=1.0, gptq=True, preset="int4-gptq"),
        "int4-awq-gptq": Recipe(ratio=1.0, awq=True, gptq=True, preset="int4-awq-gptq"),
        "int4-all-layers": Recipe(ratio=1.0, all_layers=True, preset="int4-all-layers"),
        "int4-awq-all-layers": PRESETS["int4-awq-all"],
    }


def measure(name: str, recipe, gguf: Path, float_dir: Path, root: Path) -> dict:
    from ovchat.tools import fidelity
    from ovchat.tools.export import export

    out = root / name
    manifest = export(gguf, out, recipe, force=True, check=False, kind="default")
    result = fidelity.measure(float_dir, out)
    return {"recipe": manifest["recipe"], "export_seconds": manifest["export_seconds"],
            "fidelity": result.to_manifest(), "roofline": roofline.ir_decode_bytes(out), "folder": str(out),
            "load_average": load_average()}


def table(entries: dict) -> str:
    lines = ["| variant | top-1 agreement | perplexity ratio | decode MB/token | weights MB | export s |",
             "|---|---|---|---|---|---|"]
    for name, e in entries.items():
        f, r = e["fidelity"], e["roofline"]
        lines.append(f"| {name} | {f['top1_agreement']:.3f} | {f['perplexity_ratio']:.3f} | "
                     f"{r['decode_bytes'] / 1e6:.1f} | {r['weights_bytes'] / 1e6:.1f} | {e['export_seconds']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.export_presets", description=__doc__.split("\n")[0])
    parser.add_argument("--variant", action="append", choices=sorted(variants()), help="repeatable (default: all)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where presets.json goes (default: %(default)s)")
    args = parser.parse_args(argv)
    from ovchat.tools import default_model, gguf_convert
    from ovchat.benchmarks.phi3_shaped import bench_dir

    chosen = {name: recipe for name, recipe in variants().items() if not args.variant or name in args.variant}
    path = args.out / "presets.json"
    report = json.loads(path.read_text()) if path.exists() else {"entries": {}}
    report["machine"] = machine_info()
    gguf = default_model.fetch_gguf()
    with tempfile.TemporaryDirectory() as work:
        float_dir = Path(work) / "float"
        gguf_convert.convert(gguf, float_dir)
        for name, recipe in chosen.items():
            started = time.monotonic()
            report["entries"][name] = measure(name, recipe, gguf, float_dir, bench_dir() / "presets")
            print(f"[presets] {name}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
            args.out.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(report, indent=1) + "\n")
    print(table(report["entries"]))
    print(json.dumps({name: {"top1_agreement": round(e["fidelity"]["top1_agreement"], 3),
                             "perplexity_ratio": round(e["fidelity"]["perplexity_ratio"], 3),
                             "decode_mb": round(e["roofline"]["decode_bytes"] / 1e6, 1)}
                      for name, e in report["entries"].items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
