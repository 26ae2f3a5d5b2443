"""`python -m ovchat.tools.calibrated_export SRC OUT RECIPE_JSON`: a data-aware int4 export.

optimum-cli's `--dataset` takes only the name of a hub dataset; optimum-intel's Python API also
takes a list of texts. This runs the same two steps as `optimum-cli export openvino` with a
weight-only config (optimum-intel 2.2, `commands/export/openvino.py`): `main_export` writes the
float IR, the tokenizers and the configs into OUT, then `_main_quantize` compresses that IR with
NNCF and saves it in place; the only difference is the dataset: tools/calibration.py's samples.

It runs as a child process, like optimum-cli, so tools/export.py captures its log the same way
and its memory is returned when it ends. RECIPE_JSON is a `Recipe` as a JSON object.
"""

import json
import os
import sys
from pathlib import Path


def main(argv=None) -> int:
    src, out, recipe_json = (argv if argv is not None else sys.argv[1:])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder: never ask the hub for anything
    from huggingface_hub.constants import HF_HUB_CACHE
    from optimum.exporters.openvino.__main__ import _main_quantize, main_export
    from optimum.intel.openvino.configuration import OVConfig

    from . import calibration, optimum_cli
    from .recipe import Recipe

    optimum_cli.lift()

    recipe = Recipe(**json.loads(recipe_json))
    texts = calibration.samples()
    print(f"Applying data-aware int4 on {len(texts)} calibration samples from tools/calibration.py", flush=True)
    ov_config = OVConfig(quantization_config={**recipe.weight_config(texts), "tokenizer": src})
    main_export(model_name_or_path=src, output=Path(out), task=recipe.task, trust_remote_code=recipe.trust_remote_code,
                ov_config=ov_config, convert_tokenizer=True, library_name="transformers", cache_dir=HF_HUB_CACHE)
    _main_quantize(model_name_or_path=src, task=recipe.task, library_name="transformers",
                   quantization_config=ov_config.quantization_config, output=Path(out), cache_dir=HF_HUB_CACHE,
                   trust_remote_code=recipe.trust_remote_code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
