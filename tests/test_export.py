"""`ovchat export` without exporting a real model: recipe, group-size fallback, fidelity verdicts,
one-line errors on bad input, atomic output (optimum-cli replaced by a fake)."""

import argparse
import json
from pathlib import Path

import pytest

from ovchat.engine import EngineError
from ovchat.tools import export as export_mod
from ovchat.tools import export_cli, fidelity
from ovchat.tools.export import ExportError, export, is_valid_export
from ovchat.tools.recipe import Recipe, RecipeError, fit_group_size, input_channels


def run_cli(argv):
    """What cli.main.main does for `export`: parse, run, print EngineErrors as one line."""
    parser = argparse.ArgumentParser(prog="ovchat")
    export_cli.register(parser.add_subparsers())
    args = parser.parse_args(["export", *argv])
    try:
        return args.func(args)
    except EngineError as error:
        print(f"ovchat: {error}")
        return 1


def write_hf_folder(path: Path, architectures=("LlamaForCausalLM",), hidden=576, intermediate=1536) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    config = {"architectures": list(architectures), "model_type": "llama", "hidden_size": hidden,
              "intermediate_size": intermediate, "num_attention_heads": 9, "head_dim": 64}
    (path / "config.json").write_text(json.dumps(config))
    (path / "model.safetensors").write_bytes(b"weights")
    return path


def write_gguf(path: Path, arch: str, tokenizer: str | None = None, pre: str | None = None,
               tensor: str | None = None) -> Path:
    """A GGUF with a header only: enough for the checks that run before any conversion."""
    import numpy as np
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFWriter

    writer = GGUFWriter(str(path), arch)
    if tokenizer:
        writer.add_tokenizer_model(tokenizer)
        writer.add_token_list(["a", "b"])
    if pre:
        writer.add_tokenizer_pre(pre)
    if tensor:  # one block of zeros of that type
        kind = GGMLQuantizationType[tensor]
        writer.add_tensor("output.weight", np.zeros((1, GGML_QUANT_SIZES[kind][1]), dtype=np.uint8), raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_the_default_recipe_is_the_seeds():
    args = Recipe().optimum_cli_args(Path("SRC"), Path("OUT"))
    assert args == ["export", "openvino", "--model", "SRC", "--task", "text-generation-with-past", "--weight-format",
                    "int4", "--group-size", "128", "--ratio", "0.6", "--sym", "OUT"]
    assert "--trust-remote-code" in Recipe(trust_remote_code=True).optimum_cli_args(Path("S"), Path("O"))
    assert "--sym" not in Recipe(sym=False).optimum_cli_args(Path("S"), Path("O"))


@pytest.mark.parametrize("widths, expected", [
    ({576, 1536}, 64),          # SmolLM2-135M: 128 does not divide 576
    ({128, 256}, 128),          # the tiny Phi-3
    ({3072, 8192}, 128),        # Phi-3-mini
    ({96, 192}, 32),
    ({100, 300}, -1),           # no power of two >= 16 divides 100: per-channel
])
def test_group_size_falls_back_to_one_that_divides_every_layer(widths, expected):
    assert fit_group_size(128, widths) == expected


def test_input_channels_come_from_the_config():
    config = {"hidden_size": 576, "intermediate_size": 1536, "num_attention_heads": 9, "head_dim": 64}
    assert input_channels(config) == {576, 1536}


@pytest.mark.parametrize("kwargs, flag", [
    ({"ratio": 0.0}, "--ratio"), ({"ratio": 1.5}, "--ratio"), ({"group_size": 0}, "--group-size"),
    ({"weight_format": "int3"}, "--weight-format"), ({"task": "image-classification"}, "--task"),
])
def test_invalid_recipe_values_name_the_flag(kwargs, flag):
    with pytest.raises(RecipeError, match=flag):
        Recipe(**kwargs)


def test_fidelity_verdicts():
    assert fidelity.judge(0.78, 11.7, 14.0, vocab_size=49152).passed          # the default model
    assert not fidelity.judge(0.30, 11.7, 14.0, vocab_size=49152).passed      # predictions diverge
    assert not fidelity.judge(0.90, 11.7, 30.0, vocab_size=49152).passed      # perplexity blows up
    near_uniform = fidelity.judge(0.10, 413.0, 413.2, vocab_size=512)         # a tiny random model
    assert near_uniform.passed and not near_uniform.agreement_applies
    assert not fidelity.judge(0.10, 413.0, 900.0, vocab_size=512).passed


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "nowhere", "does not exist"),
    (lambda tmp: (tmp / "notes.txt").write_text("hello") and tmp / "notes.txt", "not a GGUF"),
    (lambda tmp: tmp, "no config.json"),
    (lambda tmp: (tmp / "config.json").write_text("{oops") and tmp, "not valid JSON"),
    (lambda tmp: write_hf_folder(tmp, architectures=("BertForSequenceClassification",)), "not a causal language model"),
    (lambda tmp: (tmp / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}') and tmp, "no weights"),
    (lambda tmp: write_gguf(tmp / "m.gguf", "bert"), "architecture 'bert' is not supported"),
    (lambda tmp: write_gguf(tmp / "m.gguf", "llama", tokenizer="llama"), "tokenizer 'llama' (SentencePiece) without token scores"),
    (lambda tmp: write_gguf(tmp / "m.gguf", "llama", tokenizer="gpt2", pre="tekken"),
     "tokenizer 'gpt2' (byte-level BPE) with pre-tokenizer 'tekken' is not supported (supported: byte-level BPE"),
    (lambda tmp: write_gguf(tmp / "m.gguf", "llama", tokenizer="rwkv"), "GGUF tokenizer 'rwkv' is not supported"),
    (lambda tmp: write_gguf(tmp / "m.gguf", "qwen2", tokenizer="gpt2", pre="qwen2", tensor="IQ4_NL"),
     "GGUF tensor type IQ4_NL is not supported (supported: F32, F16, BF16, Q4_0"),
    (lambda tmp: (tmp / "m.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x01" * 40) and tmp / "m.gguf",
     "not a readable GGUF file (truncated or corrupt)"),
])
def test_bad_sources_get_one_clear_line(tmp_path, capsys, make, message):
    src = make(tmp_path)
    assert run_cli([str(src), str(tmp_path / "out")]) == 1
    out = capsys.readouterr().out
    assert message in out and out.count("\n") == 1 and "Traceback" not in out
    assert not (tmp_path / "out").exists()


def test_an_invalid_flag_value_is_one_line(tmp_path, capsys):
    assert run_cli([str(write_hf_folder(tmp_path / "src")), str(tmp_path / "out"), "--ratio", "2"]) == 1
    assert capsys.readouterr().out.strip() == "ovchat: --ratio must be in (0, 1], not 2.0"


def test_a_runtime_only_install_is_told_to_install_the_export_extra(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("torch", "nncf") else real(name, *a))
    assert run_cli(["default"]) == 1
    assert capsys.readouterr().out.startswith("ovchat: `ovchat export` needs the export extra, missing here: torch, nncf;")


def test_out_is_required_except_for_default(tmp_path, capsys):
    assert run_cli([str(write_hf_folder(tmp_path / "src"))]) == 1
    assert "OUT is missing" in capsys.readouterr().out


@pytest.fixture
def fake_optimum(monkeypatch):
    """Replace optimum-cli by a fake that writes the exported files (placeholders: no tokenizer
    models to fix); records its arguments."""
    calls = []

    def run(args, log_path):
        calls.append(args)
        out = Path(args[-1])
        out.mkdir(parents=True)
        for name in export_mod.EXPORTED_FILES:
            (out / name).write_text(name)

    monkeypatch.setattr(export_mod, "run_optimum", run)
    monkeypatch.setattr(export_mod.ov_tokenizer_fixes, "apply", lambda folder: [])
    return calls


def test_an_export_writes_files_and_manifest_with_the_group_size_used(tmp_path, fake_optimum):
    src, out = write_hf_folder(tmp_path / "src"), tmp_path / "models" / "out"
    manifest = export(src, out, check=False)
    assert fake_optimum[0][fake_optimum[0].index("--group-size") + 1] == "64"
    assert manifest["recipe"]["group_size"] == 64 and manifest["recipe"]["group_size_requested"] == 128
    assert manifest["source"] == {"kind": "hf", "path": str(src.resolve()), "sha256": export_mod.sha256(src)}
    assert json.loads((out / "ovchat.json").read_text()) == manifest
    assert is_valid_export(out) and sorted(p.name for p in out.parent.iterdir()) == ["out"]


def test_an_existing_out_is_kept_without_force_and_replaced_with_it(tmp_path, fake_optimum):
    src, out = write_hf_folder(tmp_path / "src"), tmp_path / "out"
    out.mkdir()
    (out / "precious").write_text("mine")
    with pytest.raises(ExportError, match="--force"):
        export(src, out, check=False)
    assert (out / "precious").exists() and not fake_optimum
    export(src, out, check=False, force=True)
    assert not (out / "precious").exists() and is_valid_export(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]


@pytest.mark.parametrize("failure", [KeyboardInterrupt, OSError(28, "No space left on device")])
def test_an_interrupted_export_leaves_nothing_behind(tmp_path, monkeypatch, failure):
    src, out = write_hf_folder(tmp_path / "src"), tmp_path / "out"

    def crash(args, log_path):
        Path(args[-1]).mkdir()
        (Path(args[-1]) / "openvino_model.xml").write_text("half")
        raise failure

    monkeypatch.setattr(export_mod, "run_optimum", crash)
    with pytest.raises((KeyboardInterrupt, ExportError), match=None if failure is KeyboardInterrupt else
                       "No space left on device; nothing was written to"):
        export(src, out, check=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_a_killed_exports_leftovers_are_cleaned_by_the_next_one(tmp_path, fake_optimum):
    src, out = write_hf_folder(tmp_path / "src"), tmp_path / "out"
    (tmp_path / ".out.tmp-999999999" / "model").mkdir(parents=True)   # no such process
    export(src, out, check=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]


def test_a_failing_optimum_run_is_reported_in_one_line(tmp_path, monkeypatch):
    log = tmp_path / "log"
    monkeypatch.setattr(export_mod, "_optimum_command", lambda args: ["/bin/sh", "-c", "echo noise; echo 'ValueError: bad model' >&2; exit 3"])
    with pytest.raises(ExportError, match=r"optimum-cli export failed: ValueError: bad model \(full log: "):
        export_mod.run_optimum([], log)


def test_a_converter_crash_is_one_line_naming_the_step(tmp_path, monkeypatch, capsys):
    src, out = write_hf_folder(tmp_path / "src"), tmp_path / "out"

    def crash(args, log_path):
        raise ValueError("Unrecognized configuration class\nwith a long second line")

    monkeypatch.setattr(export_mod, "run_optimum", crash)
    assert run_cli([str(src), str(out), "--no-check"]) == 1
    said = capsys.readouterr().out.strip().splitlines()
    assert said == [said[0]] and said[0].startswith("ovchat: export failed while ")
    assert "ValueError: Unrecognized configuration class" in said[0] and "nothing was written" in said[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_the_manifest_records_each_files_size_and_sha256_and_a_truncated_one_invalidates(tmp_path, fake_optimum):
    out = tmp_path / "out"
    manifest = export(write_hf_folder(tmp_path / "src"), out, check=False)
    assert sorted(manifest["files"]) == sorted(export_mod.EXPORTED_FILES)
    bin_record = manifest["files"]["openvino_model.bin"]
    assert bin_record == {"size_bytes": len("openvino_model.bin"), "sha256": export_mod.sha256(out / "openvino_model.bin")}
    (out / "openvino_model.bin").write_text("openvino_model")
    assert not is_valid_export(out)  # so `ovchat export default` rebuilds a truncated default model


def test_a_named_model_this_install_cannot_export_is_refused_before_downloading(tmp_path, capsys, monkeypatch):
    from ovchat.tools import gguf_convert, named_models

    monkeypatch.setattr(gguf_convert, "unexportable", lambda arch: f"GGUF architecture '{arch}' converts, but no")
    monkeypatch.setattr(named_models, "fetch", lambda name: pytest.fail("downloaded a model it cannot export"))
    assert run_cli(["gemma3-270m", str(tmp_path / "out")]) == 1
    assert capsys.readouterr().out == "ovchat: gemma3-270m: GGUF architecture 'gemma3' converts, but no\n"


def test_a_named_model_is_fetched_then_exported_as_its_kind(tmp_path, monkeypatch):
    from ovchat.tools import gguf_convert, named_models

    calls = []
    monkeypatch.setattr(gguf_convert, "unexportable", lambda arch: None)
    monkeypatch.setattr(named_models, "fetch", lambda name: tmp_path / f"{name}.gguf")
    monkeypatch.setattr(export_mod, "export", lambda src, out, recipe, **kw: calls.append((src, out, kw)))
    assert run_cli(["gemma3-270m", str(tmp_path / "out")]) == 0
    assert calls == [(tmp_path / "gemma3-270m.gguf", tmp_path / "out", {"force": False, "check": True, "kind": "gemma3-270m"})]
