"""`optimum-cli`, with two of optimum-intel's transformers ceilings raised where we verified the export.

optimum-intel's export configs name the transformers versions they accept. In 2.2 Gemma 2 and
Gemma 3 (text) stop at transformers 5.0, yet their export with 5.5 gives torch's logits (cosine
> 0.9999, the same top-1 at every position, past the sliding window: tests/test_hf_families.py)
and genai runs it as torch does. LIFTED raises those two ceilings only, up to the transformers
the project pins; the subclasses that inherit them (Gemma 3n, Gemma 4) keep the old one.

Run as `python -m ovchat.tools.optimum_cli ARGS` (tools/export.py does): optimum-cli with the
lift applied; tools/calibrated_export.py and gguf_convert's refusal ask `lift()` themselves.
"""

import sys

LIFTED = {"gemma2": "5.5.99", "gemma3_text": "5.5.99"}  # pyproject: transformers < 5.6


def lift() -> None:
    """Raise the ceilings of LIFTED's model types in optimum-intel's registered export configs."""
    from optimum.exporters.openvino import model_configs  # noqa: F401  (registers the OpenVINO export configs)
    from optimum.exporters.tasks import TasksManager

    ceilings = {}  # export config class -> its new ceiling
    for model_type, ceiling in LIFTED.items():
        config = TasksManager.get_exporter_config_constructor(
            exporter="openvino", model_type=model_type, task="text-generation-with-past", library_name="transformers")
        ceilings[getattr(config, "func", config)] = ceiling
    # Subclasses that inherit a ceiling keep the value they had: only the verified types move.
    kept = {sub: sub.MAX_TRANSFORMERS_VERSION for cls in ceilings for sub in _subclasses(cls)
            if sub not in ceilings and "MAX_TRANSFORMERS_VERSION" not in vars(sub)}
    for cls, ceiling in ceilings.items():
        cls.MAX_TRANSFORMERS_VERSION = ceiling
    for sub, ceiling in kept.items():
        sub.MAX_TRANSFORMERS_VERSION = ceiling


def _subclasses(cls) -> list:
    direct = cls.__subclasses__()
    return direct + [deeper for sub in direct for deeper in _subclasses(sub)]


def main() -> None:
    lift()
    from optimum.commands.optimum_cli import main as optimum_cli

    sys.argv[0] = "optimum-cli"
    optimum_cli()


if __name__ == "__main__":
    main()
