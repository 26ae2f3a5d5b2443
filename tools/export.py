"""Export a chat LLM to an OpenVINO folder: SRC (a Hugging Face folder or a .gguf file) -> OUT.

Steps: check the source, hash it, (GGUF: convert to a float Hugging Face folder), run
`optimum-cli export openvino` with the recipe (NNCF does the weight compression,
openvino-tokenizers the tokenizer; a data-aware recipe runs the same steps through
tools/calibrated_export.py, which hands NNCF the shipped calibration text), fix two departures
of openvino-tokenizers in its models (tools/ov_tokenizer_fixes.py), measure fidelity against the
float source, write `ovchat.json` (with every output file's size and sha256, which `ovchat info
--verify` and a failed load check), and rename into place.

Atomic: everything is written under a hidden `.OUT.tmp-PID` folder beside OUT and OUT appears
only by a rename at the very end, so a crash, Ctrl-C or full disk leaves no half-written model.
An existing OUT is replaced only with `force`.
"""

import datetime
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..engine import EngineError

from .staging import move_into_place, staging_folder
from . import fidelity, gguf_convert, gguf_native, llama_cpp_agreement, ov_tokenizer_fixes, recipe as recipes

MANIFEST = "ovchat.json"
MANIFEST_VERSION = 2  # 2: "files" records every output file's size and sha256
EXPORTED_FILES = (
    "openvino_model.xml", "openvino_model.bin", "openvino_tokenizer.xml", "openvino_detokenizer.xml",
    "config.json", "generation_config.json",
)
# Lines of optimum-cli's output worth showing while it runs: NNCF's progress and its table.
_SHOWN = re.compile(r"━|│|┝|┍|┕|├|Statistics of the bitwidth|Applying|Mixed-Precision")


class ExportError(EngineError):
    """The export could not be done; the message says why and what to do."""


@dataclass(frozen=True)
class Source:
    kind: str          # "hf", "gguf" or "default"
    path: Path


@dataclass
class Progress:
    """`[i/n] message…` lines on stderr, with the time each step took."""

    total: int
    step: int = 0
    started: float = field(default_factory=time.monotonic)
    _last: float = field(default_factory=time.monotonic)

    current: str = "starting"

    def __call__(self, message: str) -> None:
        self.current = message
        if self.step:
            print(f"    done ({time.monotonic() - self._last:.0f} s)", file=sys.stderr)
        self.step += 1
        self._last = time.monotonic()
        print(f"[{self.step}/{self.total}] {message}…", file=sys.stderr, flush=True)

    def finish(self, message: str) -> None:
        print(f"    done ({time.monotonic() - self._last:.0f} s)", file=sys.stderr)
        print(f"{message} in {time.monotonic() - self.started:.0f} s", file=sys.stderr, flush=True)


def check_source(src: Path, kind: str | None = None) -> Source:
    """What `src` is; one clear ExportError if it is missing, unreadable or not a causal LM."""
    if not src.exists():
        raise ExportError(f"source {src} does not exist; pass a Hugging Face model folder, a .gguf file or 'default'")
    if src.is_file():
        if not os.access(src, os.R_OK):
            raise ExportError(f"source {src} is not readable (check its permissions)")
        if not gguf_convert.is_gguf(src):
            raise ExportError(f"source {src} is a file but not a GGUF model; pass a Hugging Face model folder or a .gguf file")
        reader = gguf_convert.read_gguf(src)
        gguf_convert.check_supported(reader, src)
        gguf_convert.check_exportable(reader, src)
        return Source(kind or "gguf", src)
    if not src.is_dir():
        raise ExportError(f"source {src} is neither a model folder nor a .gguf file")
    _check_hf_folder(src)
    return Source(kind or "hf", src)


def _check_hf_folder(src: Path) -> None:
    config_path = src / "config.json"
    try:
        config = json.loads(config_path.read_text())
    except FileNotFoundError:
        raise ExportError(f"{src} has no config.json: it is not a Hugging Face model folder") from None
    except (OSError, ValueError) as error:
        raise ExportError(f"{config_path} is unreadable or not valid JSON ({error})") from None
    if not _is_causal_lm(config):
        arch = ", ".join(config.get("architectures") or [config.get("model_type", "unknown")])
        raise ExportError(f"{src} holds a {arch}, not a causal language model; ovchat exports chat LLMs only")

    if not any(src.glob("*.safetensors")) and not any(src.glob("*.bin")):
        raise ExportError(f"{src} has no weights (*.safetensors or *.bin)")


def _is_causal_lm(config: dict) -> bool:
    architectures = config.get("architectures") or []
    if architectures:
        return any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures)
    if "AutoModelForCausalLM" in (config.get("auto_map") or {}):
        return True
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return config.get("model_type") in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES


def sha256(path: Path) -> str:
    """sha256 of a file; of a folder, of its files' relative paths and contents in sorted order."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def file_records(folder: Path) -> dict:
    """{relative path: {"size_bytes", "sha256"}} of every file in `folder` but the manifest."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    return {str(p.relative_to(folder)): {"size_bytes": p.stat().st_size, "sha256": sha256(p)} for p in files}


def tool_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    names = ("ovchat", "openvino", "openvino-genai", "openvino-tokenizers", "optimum", "optimum-intel", "nncf",
             "transformers", "tokenizers", "torch", "gguf")
    versions = {"python": sys.version.split()[0]}
    for name in names:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def is_valid_export(out: Path, source_sha256: str | None = None) -> bool:
    """True when `out` is a complete ovchat export (of the source with that hash, if given)."""
    try:
        manifest = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if any(not (out / name).is_file() for name in EXPORTED_FILES):
        return False
    # Sizes only (a stat each): a truncated file makes the export invalid, so `export default` redoes it.
    for name, record in (manifest.get("files") or {}).items():
        if not (out / name).is_file() or (out / name).stat().st_size != record.get("size_bytes"):
            return False
    if source_sha256 and manifest.get("source", {}).get("sha256") != source_sha256:
        return False
    return manifest.get("fidelity", {}).get("passed", True) is not False


def _optimum_command(args: list) -> list:
    return [sys.executable, "-m", f"{__package__}.optimum_cli", *args]  # optimum-cli, Gemma's ceiling lifted


def run_optimum(args: list, log_path: Path) -> None:
    """Run optimum-cli with `args`, showing NNCF's progress; ExportError with its last error line."""
    _run_logged(_optimum_command(args), log_path, "optimum-cli export")


def run_calibrated(recipe: recipes.Recipe, source_dir: Path, out_dir: Path, log_path: Path) -> None:
    """A data-aware recipe: the same export steps, in a child process given the shipped calibration
    text (tools/calibrated_export.py; optimum-cli can't take a text from its command line)."""
    command = [sys.executable, "-m", f"{__package__}.calibrated_export", str(source_dir), str(out_dir),
               json.dumps(asdict(recipe))]
    _run_logged(command, log_path, "the data-aware export")


def _run_logged(command: list, log_path: Path, what: str) -> None:
    with open(log_path, "w") as log, subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    ) as process:
        for line in process.stdout:
            log.write(line)
            if _SHOWN.search(line):
                print("   ", line.rstrip(), file=sys.stderr, flush=True)
    if process.returncode:
        lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
        errors = [line for line in lines if re.match(r"^[\w.]*(Error|Exception)\b", line)]
        kept = Path(tempfile.gettempdir()) / f"ovchat-export-{os.getpid()}.log"
        shutil.copyfile(log_path, kept)
        last = (errors or lines or ["no output"])[-1]
        raise ExportError(f"{what} failed: {last} (full log: {kept})")


def check_out(out: Path | str, force: bool) -> None:
    """Refuse an existing `out` (unless `force`), before any work or message."""
    out = Path(out).expanduser().resolve()
    if out.exists() and not force:
        raise ExportError(f"{out} already exists; pass --force to replace it")


def export(
    src: Path,
    out: Path,
    recipe: recipes.Recipe = recipes.Recipe(),
    *,
    force: bool = False,
    check: bool = True,
    kind: str | None = None,
    answer_checks: tuple = (),
) -> dict:
    """Export `src` to `out` with `recipe`; return the manifest written to out/ovchat.json.

    `answer_checks`: (question, expected substring) pairs the exported model must answer."""
    src, out = Path(src).expanduser().resolve(), Path(out).expanduser().resolve()
    check_out(out, force)
    if recipe.keep_gguf:  # from the header alone, before any slow step
        _check_keepable(src)
    source = check_source(src, kind)
    progress = Progress(total=3 + src.is_file() + check + bool(answer_checks))
    staging = staging_folder(out)
    started = time.monotonic()
    try:
        staging.mkdir()
        manifest = _build(source, staging, recipe, check, answer_checks, progress)
        progress(f"writing {out}")
        manifest["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        manifest["export_seconds"] = round(time.monotonic() - started, 1)
        manifest["files"] = file_records(staging / "model")
        (staging / "model" / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        move_into_place(staging / "model", out, staging)
    except OSError as error:
        where = f" ({error.filename})" if error.filename else ""
        raise ExportError(f"export failed: {error.strerror or error}{where}; nothing was written to {out}") from error
    except EngineError:
        raise
    except Exception as error:  # a converter or checker failing on this source: one line, the step it was in
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ExportError(f"export failed while {progress.current}: {type(error).__name__}: {first}; nothing was "
                          f"written to {out}. Check the source is a supported chat model (rerun with "
                          "OVCHAT_DEBUG=1 for the traceback)") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    progress.finish(f"exported {out}")
    return manifest


def _build(source: Source, staging: Path, recipe: recipes.Recipe, check: bool, answer_checks, progress) -> dict:
    """Export into staging/model (work files in staging/work); return the manifest so far."""
    model_dir, work = staging / "model", staging / "work"
    work.mkdir()
    progress(f"hashing {source.path.name}")
    manifest = {"format_version": MANIFEST_VERSION,
                "source": {"kind": source.kind, "path": str(source.path), "sha256": sha256(source.path)}}
    float_dir = source.path
    if source.path.is_file():
        progress(f"converting GGUF {source.path.name} to a float model (weights dequantized, tokenizer rebuilt)")
        float_dir = work / "float"
        manifest["source"]["gguf"] = gguf_convert.convert(source.path, float_dir)
        _say_template(source.path, manifest["source"]["gguf"]["chat_template"])
    used = recipes.fitted(recipe, float_dir)
    _say_group_size(recipe, used)
    progress(_describe(used))
    if used.keep_gguf:  # the graph from an fp16 export, then the file's own blocks put back into it
        run_optimum(replace(used, weight_format="fp16").optimum_cli_args(float_dir, model_dir), work / "optimum.log")
        manifest["source"]["gguf"]["kept_blocks"] = gguf_native.keep_blocks(source.path, model_dir)
    elif used.data_aware:
        run_calibrated(used, float_dir, model_dir, work / "optimum.log")
    else:
        try:
            run_optimum(used.optimum_cli_args(float_dir, model_dir), work / "optimum.log")
        except ExportError as error:
            raise _refused_family(float_dir) or error from error
    manifest["tokenizer_fixes"] = ov_tokenizer_fixes.apply(model_dir)
    manifest["recipe"] = used.to_manifest(recipe.group_size)
    manifest["versions"] = tool_versions()
    manifest["fidelity"] = {"skipped": True}
    if check:
        gguf = source.path if source.path.is_file() else None
        progress("measuring fidelity against the float source" + (" and llama.cpp on the same file" if gguf else ""))
        manifest["fidelity"] = _check_fidelity(float_dir, model_dir, used, gguf)
    if answer_checks:
        progress("asking the exported model: " + "; ".join(q for q, _ in answer_checks))
        manifest["fidelity"]["answers"] = _check_answers(model_dir, answer_checks)
    return manifest


def _refused_family(model_dir: Path) -> ExportError | None:
    """optimum-intel's own words when it refuses a model type with the installed transformers are a
    traceback's last line; this says which versions it takes (asked only once it failed: the
    question imports optimum-intel's export configs, a minute on a busy machine)."""
    model_type = json.loads((model_dir / "config.json").read_text()).get("model_type")
    why = gguf_convert.model_type_unexportable(model_type) if model_type else None
    return ExportError(f"{model_dir.name}: {why}") if why else None


def _check_keepable(src: Path) -> None:
    if not src.exists():
        return  # check_source says so
    if not src.is_file():
        raise ExportError(f"--preset gguf keeps a GGUF file's own quantization; {src} is a Hugging Face folder: "
                          "use another preset (the default is the seed's recipe)")
    why = gguf_native.problem(src)
    if why:
        raise ExportError(f"--preset gguf cannot keep {src.name}'s quantization: its {why}; export it with "
                          "--preset seed (dequantized, then quantized with the recipe)")


def _say_template(gguf: Path, template_from: str | None) -> None:
    if template_from is None:
        print(f"note: {gguf.name} has no chat template and its family has no known one: the model "
              "completes raw text (ovchat generate, /v1/completions); chat needs a template", file=sys.stderr)
    elif template_from.startswith("family:"):
        print(f"note: {gguf.name} has no chat template; using the {template_from[7:]} family's turn format "
              f"(tools/family_templates.py; recorded in {MANIFEST})", file=sys.stderr)


def _say_group_size(requested: recipes.Recipe, used: recipes.Recipe) -> None:
    if used.group_size != requested.group_size:
        print(f"note: group size {requested.group_size} does not divide every layer's input channels; "
              f"using {used.group_size} (recorded in {MANIFEST})", file=sys.stderr)


def _describe(r: recipes.Recipe) -> str:
    if r.keep_gguf:
        return "exporting with optimum-intel (fp16), then putting the GGUF's own quantized blocks back (no second quantization)"
    if not r.is_int4:
        return f"exporting with optimum-intel, weights {r.weight_format}"
    group = "per-channel" if r.group_size == -1 else f"group {r.group_size}"
    extras = [name.replace("_", " ") for name in ("all_layers", *recipes.DATA_AWARE) if getattr(r, name)]
    options = f", {' + '.join(extras)}" if extras else ""
    if r.data_aware:
        options += " on the shipped calibration text"
    return (f"exporting with optimum-intel, quantizing int4 ({'sym' if r.sym else 'asym'}, {group}, ratio {r.ratio}"
            f"{options}) with NNCF")


def _check_fidelity(float_dir: Path, model_dir: Path, used: recipes.Recipe, gguf: Path | None = None) -> dict:
    """Against the float source (pass/fail); a GGUF's also against llama.cpp (recorded, not judged)."""
    result = fidelity.measure(float_dir, model_dir, trust_remote_code=used.trust_remote_code)
    print(f"    fidelity: {result.summary()}", file=sys.stderr)
    if not result.passed:
        raise ExportError(
            f"FIDELITY CHECK FAILED: {result.summary()}; the threshold is agreement >= "
            f"{fidelity.THRESHOLD['top1_agreement_min']} and perplexity ratio <= {fidelity.THRESHOLD['perplexity_ratio_max']}. "
            "Nothing was written; try a gentler recipe (e.g. --ratio 0.8 or --weight-format int8), or --no-check to keep it anyway"
        )
    if gguf is None:
        return result.to_manifest()
    record, line = llama_cpp_agreement.check(gguf, model_dir)
    print(f"    {line}", file=sys.stderr)
    return {**result.to_manifest(), "llama_cpp": record}


def _check_answers(model_dir: Path, checks) -> list:
    from .. import engine

    model = engine.Engine.load(model_dir, device="CPU")
    results = []
    for question, expected in checks:
        answer = model.generate(question, engine.GenerationOptions(max_new_tokens=32)).text
        results.append({"question": question, "expected": expected, "answer": answer, "passed": expected in answer})
        print(f"    {question} -> {answer.strip()!r}", file=sys.stderr)
    failed = [r for r in results if not r["passed"]]
    if failed:
        raise ExportError(
            f"ANSWER CHECK FAILED: asked {failed[0]['question']!r}, expected {failed[0]['expected']!r}, "
            f"got {failed[0]['answer'].strip()!r}; nothing was written"
        )
    return results
