"""What OpenVINO's CPU plugin does with the thread settings a Ray replica gets (issue 19, point 2).

Ray starts an actor of `num_cpus=N` with OMP_NUM_THREADS=N but does not pin it to N cores.
This compiles the model with and without INFERENCE_NUM_THREADS and prints the threads the
compiled model will use; run it with and without OMP_NUM_THREADS=1:

    OMP_NUM_THREADS=1 python -m studies.ray_threads [MODEL]

Measured (2 cores, default model): 2 inference threads with or without OMP_NUM_THREADS=1 (the
plugin uses its own threading, not OpenMP, and takes every core it sees); 1 with
INFERENCE_NUM_THREADS=1. So server/ray_app.py sets INFERENCE_NUM_THREADS to the replica's CPUs.
"""

from __future__ import annotations

import json
import os
import sys


def main() -> None:
    import openvino as ov
    from ovchat.engine.model import resolve

    model = resolve(sys.argv[1] if len(sys.argv) > 1 else None).path / "openvino_model.xml"
    core = ov.Core()
    report = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "cpus_visible": len(os.sched_getaffinity(0))}
    for extra in ({}, {"INFERENCE_NUM_THREADS": 1}):
        compiled = core.compile_model(str(model), "CPU", {"PERFORMANCE_HINT": "LATENCY", **extra})
        report[f"inference_threads with {extra or 'no property'}"] = compiled.get_property("INFERENCE_NUM_THREADS")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
