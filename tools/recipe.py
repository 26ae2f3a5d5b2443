"""The export recipe: what optimum-intel and NNCF are asked to do, and the group-size fallback.

The defaults are the seed's recipe, i.e. what this command line does:
  optimum-cli export openvino --model microsoft/Phi-3-mini-4k-instruct --task text-generation-with-past
      --weight-format int4 --group-size 128 --ratio 0.6 --sym --trust-remote-code OUT
Every field can be changed from `ovchat export`'s flags. PRESETS holds named alternatives
(`ovchat export SRC OUT --preset NAME`), measured in studies/results/2026-12-01-export-presets/
(default model: top-1 agreement / perplexity ratio against the float source, MB read per token):
  seed        the seed's recipe (the default)                               0.779 / 1.197, 105 MB
  int4        every layer int4 (ratio 1.0), sym, group 128: fewer bytes
              per weight than Q4_0                                          0.709 / 1.296,  85 MB
  int4-awq    the same plus NNCF's data-aware AWQ and scale estimation,
              calibrated on tools/calibration.py's shipped text             0.782 / 1.139,  85 MB
  int4-awq-all  int4-awq with the embedding and output layers int4 too
              (NNCF's all_layers; SmolLM2 ties them: one table)             0.716 / 1.298,  72 MB
  gguf        a GGUF source's own quantized blocks kept as they are (tools/gguf_native.py): no
              second quantization; for the files openvino_genai's GGUF reader builds
With ratio 1.0 NNCF still keeps the embedding table and the output layer in int8 unless
`all_layers` is set.
"""

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..engine import EngineError

WEIGHT_FORMATS = ("int4", "int8", "fp16", "fp32")
# Group sizes tried, largest first, when the requested one does not divide every layer's
# input channels. -1 is NNCF's per-channel quantization: it always fits.
FALLBACK_GROUP_SIZES = (128, 64, 32, 16, -1)
# NNCF's options that need a calibration text (tools/calibration.py): a data-aware recipe.
DATA_AWARE = ("awq", "scale_estimation", "gptq")


class RecipeError(EngineError, ValueError):
    """A recipe flag has an invalid value."""


@dataclass(frozen=True)
class Recipe:
    """One export's settings; `group_size` -1 means per-channel."""

    task: str = "text-generation-with-past"
    weight_format: str = "int4"
    sym: bool = True
    group_size: int = 128
    ratio: float = 0.6
    trust_remote_code: bool = False
    all_layers: bool = False        # int4 for the embedding and output layers too
    awq: bool = False               # data-aware activation-aware scaling
    scale_estimation: bool = False  # data-aware scales minimizing each layer's output error
    gptq: bool = False              # data-aware layer-wise weight correction
    keep_gguf: bool = False         # a GGUF's own blocks kept (tools/gguf_native.py); NNCF not run
    preset: str = "seed"            # the PRESETS entry this recipe started from (recorded only)

    def __post_init__(self):
        if self.weight_format not in WEIGHT_FORMATS:
            raise RecipeError(f"--weight-format must be one of {', '.join(WEIGHT_FORMATS)}, not '{self.weight_format}'")
        if not (0.0 < self.ratio <= 1.0):
            raise RecipeError(f"--ratio must be in (0, 1], not {self.ratio}")
        if self.group_size != -1 and self.group_size < 1:
            raise RecipeError(f"--group-size must be a positive integer or -1 (per-channel), not {self.group_size}")
        if not self.task.startswith("text-generation"):
            raise RecipeError(f"--task must be text-generation or text-generation-with-past, not '{self.task}'")
        if not self.is_int4 and (self.all_layers or self.data_aware):
            raise RecipeError(f"the preset '{self.preset}' is int4-only (AWQ, scale estimation, GPTQ and all-layers "
                              f"apply to int4 weights); drop --weight-format {self.weight_format} or use --preset seed")

    @property
    def is_int4(self) -> bool:
        return self.weight_format == "int4"

    @property
    def data_aware(self) -> bool:
        """True when NNCF must read the calibration text (optimum-cli can't take it: see calibrated_export)."""
        return any(getattr(self, name) for name in DATA_AWARE)

    def weight_config(self, texts: list) -> dict:
        """optimum-intel's OVWeightQuantizationConfig fields for a data-aware int4 recipe on `texts`."""
        return {"bits": 4, "dtype": "int4", "sym": self.sym, "group_size": self.group_size, "ratio": self.ratio,
                "all_layers": self.all_layers or None, "quant_method": "awq" if self.awq else "default",
                "scale_estimation": self.scale_estimation or None, "gptq": self.gptq or None,
                "dataset": list(texts), "num_samples": len(texts)}

    def optimum_cli_args(self, model_dir: Path, out_dir: Path) -> list:
        """Arguments for `optimum-cli export openvino` (after the program name)."""
        args = ["export", "openvino", "--model", str(model_dir), "--task", self.task, "--weight-format", self.weight_format]
        if self.is_int4:
            args += ["--group-size", str(self.group_size), "--ratio", str(self.ratio)]
            if self.sym:
                args.append("--sym")
            if self.all_layers:
                args.append("--all-layers")
        elif self.weight_format == "int8" and self.sym:
            args.append("--sym")
        if self.trust_remote_code:
            args.append("--trust-remote-code")
        return args + [str(out_dir)]

    def to_manifest(self, group_size_requested: int) -> dict:
        data = asdict(self)
        if self.keep_gguf:  # nothing was quantized: the file's blocks say what the weights are
            return {"preset": self.preset, "keep_gguf": True, "task": self.task,
                    "weights": "the GGUF's own blocks, group 32, Q6_K 16 (Q4_0/Q4_1/Q4_K as u4, Q5_1/Q5_K as "
                               "u8, Q5_0/Q6_K/Q8_0 as i8, f16 scales); F32/F16 as fp16"}
        if self.data_aware:
            data["calibration"] = "tools/calibration.py"
        if not self.is_int4:  # group size and ratio mean nothing for int8/fp16/fp32
            del data["group_size"], data["ratio"]
        else:
            data["group_size_requested"] = group_size_requested
        return data


def input_channels(config: dict) -> set:
    """Input widths of a decoder's linear layers, from its config.json.

    hidden_size feeds the q/k/v, gate/up and lm_head projections, intermediate_size the down
    projection, heads * head_dim the attention output projection."""
    text = config.get("text_config", config)
    hidden = text.get("hidden_size") or text.get("n_embd") or text.get("d_model")
    if not hidden:
        return set()
    widths = {hidden}
    inner = text.get("intermediate_size") or text.get("n_inner") or text.get("ffn_dim")
    if inner:
        widths.add(inner)
    heads = text.get("num_attention_heads") or text.get("n_head")
    if heads:
        widths.add(heads * (text.get("head_dim") or hidden // heads))
    return widths


def fit_group_size(requested: int, widths: set) -> int:
    """`requested` if it divides every width, else the largest fallback that does."""
    if requested == -1 or not widths:
        return requested
    common = math.gcd(*widths)
    if common % requested == 0:
        return requested
    return next(g for g in FALLBACK_GROUP_SIZES if g == -1 or (g < requested and common % g == 0))


def fitted(recipe: Recipe, model_dir: Path) -> Recipe:
    """The recipe with a group size that works for the model in `model_dir`."""
    if not recipe.is_int4 or recipe.keep_gguf:
        return recipe
    config = json.loads((model_dir / "config.json").read_text())
    return replace(recipe, group_size=fit_group_size(recipe.group_size, input_channels(config)))


PRESETS = {
    "seed": Recipe(),
    "int4": Recipe(ratio=1.0, preset="int4"),
    "int4-awq": Recipe(ratio=1.0, awq=True, scale_estimation=True, preset="int4-awq"),
    "int4-awq-all": Recipe(ratio=1.0, awq=True, scale_estimation=True, all_layers=True, preset="int4-awq-all"),
    "gguf": Recipe(keep_gguf=True, preset="gguf"),
}
