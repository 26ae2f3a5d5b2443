"""The export recipe: what optimum-intel and NNCF are asked to do, and the group-size fallback.

The defaults are the seed's recipe, i.e. what this command line does:
  optimum-cli export openvino --model microsoft/Phi-3-mini-4k-instruct --task text-generation-with-past
      --weight-format int4 --group-size 128 --ratio 0.6 --sym --trust-remote-code OUT
Every field can be changed from `ovchat export`'s flags.
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

    def __post_init__(self):
        if self.weight_format not in WEIGHT_FORMATS:
            raise RecipeError(f"--weight-format must be one of {', '.join(WEIGHT_FORMATS)}, not '{self.weight_format}'")
        if not (0.0 < self.ratio <= 1.0):
            raise RecipeError(f"--ratio must be in (0, 1], not {self.ratio}")
        if self.group_size != -1 and self.group_size < 1:
            raise RecipeError(f"--group-size must be a positive integer or -1 (per-channel), not {self.group_size}")
        if not self.task.startswith("text-generation"):
            raise RecipeError(f"--task must be text-generation or text-generation-with-past, not '{self.task}'")

    @property
    def is_int4(self) -> bool:
        return self.weight_format == "int4"

    def optimum_cli_args(self, model_dir: Path, out_dir: Path) -> list:
        """Arguments for `optimum-cli export openvino` (after the program name)."""
        args = ["export", "openvino", "--model", str(model_dir), "--task", self.task, "--weight-format", self.weight_format]
        if self.is_int4:
            args += ["--group-size", str(self.group_size), "--ratio", str(self.ratio)]
            if self.sym:
                args.append("--sym")
        elif self.weight_format == "int8" and self.sym:
            args.append("--sym")
        if self.trust_remote_code:
            args.append("--trust-remote-code")
        return args + [str(out_dir)]

    def to_manifest(self, group_size_requested: int) -> dict:
        data = asdict(self)
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
    if not recipe.is_int4:
        return recipe
    config = json.loads((model_dir / "config.json").read_text())
    return replace(recipe, group_size=fit_group_size(recipe.group_size, input_channels(config)))
