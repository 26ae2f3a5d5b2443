"""`ovchat export --preset`: the presets' recipes, the shipped calibration text, the data-aware
path (a fake in place of the child process), pairing an exported folder with its GGUF in
`ovchat bench`; and one real data-aware export of the tiny Phi-3 (slow)."""

import importlib.util
import json
import re
from pathlib import Path

import pytest

from ovchat.benchmarks import phi3_shaped, runner
from ovchat.tools import calibration, fidelity
from ovchat.tools import export as export_mod
from ovchat.tools.export import export
from ovchat.tools.recipe import PRESETS, Recipe

from test_export import run_cli, write_hf_folder


@pytest.fixture
def fake_exports(monkeypatch):
    """Both export paths replaced by fakes that write the files (placeholders: no tokenizer models
    to fix); records (path, recipe or args)."""
    calls = []

    def write(out: Path):
        out.mkdir(parents=True)
        for name in export_mod.EXPORTED_FILES:
            (out / name).write_text(name)

    def optimum(args, log_path):
        calls.append(("optimum-cli", args))
        write(Path(args[-1]))

    def calibrated(recipe, model_dir, out_dir, log_path):
        calls.append(("calibrated", recipe))
        write(Path(out_dir))

    monkeypatch.setattr(export_mod, "run_optimum", optimum)
    monkeypatch.setattr(export_mod, "run_calibrated", calibrated)
    monkeypatch.setattr(export_mod.ov_tokenizer_fixes, "apply", lambda folder: [])
    return calls


def test_the_seed_recipe_stays_the_default_and_the_presets_are_all_int4():
    assert PRESETS["seed"] == Recipe() and not Recipe().data_aware
    for name in ("int4", "int4-awq"):
        preset = PRESETS[name]
        assert (preset.weight_format, preset.ratio, preset.sym, preset.group_size) == ("int4", 1.0, True, 128)
        assert preset.preset == name and not preset.all_layers
    assert not PRESETS["int4"].data_aware
    assert PRESETS["int4-awq"].data_aware and PRESETS["int4-awq"].awq and PRESETS["int4-awq"].scale_estimation
    args = PRESETS["int4"].optimum_cli_args(Path("S"), Path("O"))
    assert args[args.index("--ratio") + 1] == "1.0" and "--sym" in args and "--all-layers" not in args
    assert PRESETS["int4-awq-all"] == Recipe(ratio=1.0, awq=True, scale_estimation=True, all_layers=True,
                                             preset="int4-awq-all")
    assert PRESETS["int4-awq-all"].weight_config([])["all_layers"] is True
    assert "--all-layers" in Recipe(ratio=1.0, all_layers=True).optimum_cli_args(Path("S"), Path("O"))


def test_a_data_aware_recipe_asks_nncf_for_awq_and_scale_estimation_on_the_shipped_text():
    config = PRESETS["int4-awq"].weight_config(calibration.samples())
    assert config["quant_method"] == "awq" and config["scale_estimation"] and not config["gptq"]
    assert (config["bits"], config["sym"], config["group_size"], config["ratio"]) == (4, True, 128, 1.0)
    assert config["dataset"] == calibration.samples() and config["num_samples"] == len(calibration.samples())
    gptq = Recipe(ratio=1.0, gptq=True).weight_config(["a text"])
    assert gptq["gptq"] and gptq["quant_method"] == "default" and gptq["dataset"] == ["a text"]


def test_the_calibration_text_is_long_enough_and_shares_no_sentence_with_the_fidelity_text():
    samples = calibration.samples()
    assert len(samples) >= 16 and 1000 < len(calibration.TEXT.split()) < 4000
    sentences = lambda text: {s.strip() for s in re.split(r"[.!?]\s", text) if len(s.strip()) > 20}
    assert not sentences(calibration.TEXT) & sentences(fidelity.TEXT)
    assert not {"Paris", "Eiffel", "tea", "Moon"} & set(re.findall(r"\w+", calibration.TEXT))


def test_the_cli_takes_a_preset_and_flags_override_it(tmp_path, fake_exports):
    src = write_hf_folder(tmp_path / "src")
    assert run_cli([str(src), str(tmp_path / "seed"), "--no-check"]) == 0
    assert fake_exports[-1][0] == "optimum-cli" and "0.6" in fake_exports[-1][1]
    assert run_cli([str(src), str(tmp_path / "awq"), "--preset", "int4-awq", "--group-size", "32", "--no-check"]) == 0
    kind, recipe = fake_exports[-1]
    assert kind == "calibrated" and recipe.awq and recipe.ratio == 1.0 and recipe.group_size == 32
    manifest = json.loads((tmp_path / "awq" / "ovchat.json").read_text())
    assert manifest["recipe"]["preset"] == "int4-awq" and manifest["recipe"]["calibration"] == "tools/calibration.py"
    assert manifest["recipe"]["group_size_requested"] == 32


def test_a_preset_with_an_incompatible_weight_format_is_one_line(tmp_path, capsys, fake_exports):
    src = write_hf_folder(tmp_path / "src")
    assert run_cli([str(src), str(tmp_path / "out"), "--preset", "int4-awq", "--weight-format", "int8"]) == 1
    said = capsys.readouterr().out
    assert "int4-only" in said and "--preset seed" in said and not fake_exports


def test_a_data_aware_export_falls_back_to_group_64_on_smollm2_widths(tmp_path, fake_exports):
    manifest = export(write_hf_folder(tmp_path / "src"), tmp_path / "out", PRESETS["int4-awq"], check=False)
    assert fake_exports[0][0] == "calibrated" and fake_exports[0][1].group_size == 64
    assert manifest["recipe"]["group_size"] == 64 and manifest["recipe"]["awq"] and manifest["recipe"]["scale_estimation"]


def test_the_data_aware_child_is_an_importable_module_given_the_recipe(tmp_path, monkeypatch):
    commands = []
    monkeypatch.setattr(export_mod, "_run_logged", lambda command, log, what: commands.append(command))
    export_mod.run_calibrated(PRESETS["int4-awq"], Path("SRC"), Path("OUT"), tmp_path / "log")
    module = commands[0][commands[0].index("-m") + 1]
    assert module == "ovchat.tools.calibrated_export" and importlib.util.find_spec(module)
    assert commands[0][-3:-1] == ["SRC", "OUT"] and Recipe(**json.loads(commands[0][-1])) == PRESETS["int4-awq"]


def test_bench_runs_llamacpp_on_the_gguf_an_exported_folder_came_from(tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    paired, plain = tmp_path / "paired", tmp_path / "plain"
    paired.mkdir(), plain.mkdir()
    (paired / "ovchat.json").write_text(json.dumps({"source": {"kind": "default", "path": str(gguf)}}))
    assert runner.resolve_model(str(paired)).gguf == str(gguf)
    assert runner.resolve_model(str(plain)).gguf is None
    gguf.unlink()
    assert runner.resolve_model(str(paired)).gguf is None


def test_the_phi3_shape_int4_variant_differs_from_the_seed_only_in_ratio_and_shares_its_gguf():
    seed, int4 = phi3_shaped.VARIANTS["phi3-mini-shaped"], phi3_shaped.VARIANTS["phi3-mini-shaped-int4"]
    assert int4.shape == seed.shape and int4.gguf_name == seed.gguf_name == "phi3-mini-shaped"
    differ = [(a, b) for a, b in zip(seed.recipe, int4.recipe) if a != b]
    assert differ == [("0.6", "1.0")] and len(seed.recipe) == len(int4.recipe)
    files = runner.resolve_model("phi3-mini-shaped-int4", build=False)
    assert files.ir is None or files.ir.endswith("phi3-mini-shaped-int4")
    assert files.gguf is None or files.gguf.endswith("phi3-mini-shaped.Q4_0.gguf")


@pytest.mark.slow
def test_a_real_int4_awq_export_of_the_tiny_phi3_is_int4_everywhere_but_the_output_layer(tiny_phi3_source, tmp_path):
    import openvino as ov

    manifest = export(tiny_phi3_source, tmp_path / "awq", PRESETS["int4-awq"])
    recipe = manifest["recipe"]
    assert recipe["preset"] == "int4-awq" and recipe["awq"] and recipe["scale_estimation"] and recipe["ratio"] == 1.0
    assert manifest["fidelity"]["passed"] and 0.9 < manifest["fidelity"]["perplexity_ratio"] < 1.1
    model = ov.Core().read_model(tmp_path / "awq" / "openvino_model.xml")
    types = [op.get_element_type() for op in model.get_ops() if op.get_type_name() == "Constant"
             and len(op.get_output_shape(0)) == 3]  # grouped weights: [out, groups, group]
    # 2 layers x (qkv, o, gate_up, down) = 8 matmuls, all int4 (the seed's ratio 0.6 keeps some int8)
    assert types.count(ov.Type.i4) == 8
