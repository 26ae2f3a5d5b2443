"""`ovchat list/show/rm` on a folder of models (engine/catalog.py, cli/models.py), and the flags and
settings file of `ovchat serve` with several models (cli/serve_models.py, server/model_settings.py).
`ovchat ps` against a running server is in tests/test_server_models_engine.py."""

import json
import shutil

import pytest

from ovchat.cli.main import build_parser, main
from ovchat.engine.errors import OptionsError
from ovchat.server.model_settings import parse_duration


def fake_model(folder, name, manifest=None, size=1000):
    path = folder / name
    path.mkdir(parents=True)
    (path / "openvino_model.xml").write_text("<net/>")
    (path / "openvino_model.bin").write_bytes(b"\0" * size)
    if manifest is not None:
        (path / "ovchat.json").write_text(json.dumps(manifest))
    return path


MANIFEST = {"source": {"path": "/src/SmolLM2"}, "recipe": {"weight_format": "int4", "group_size": 128, "ratio": 0.6},
            "fidelity": {"passed": True, "top1_agreement": 0.8}}


def test_list_shows_every_model_with_source_recipe_size_and_fidelity(tmp_path, capsys):
    fake_model(tmp_path, "b-model", MANIFEST, size=3 * 2**20)
    fake_model(tmp_path, "a-model")
    (tmp_path / "x.gguf").write_bytes(b"GGUF" + b"\0" * 100)
    (tmp_path / "not-a-model").mkdir()
    assert main(["list", "--models-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "FORMAT", "SIZE", "RECIPE", "FIDELITY", "SOURCE"]
    assert [line.split()[0] for line in lines[1:]] == ["a-model", "b-model", "x"]
    assert lines[2].split() == ["b-model", "openvino", "3.0", "MB", "int4", "g128", "r0.6", "passed", "(top-1",
                                "80%)", "/src/SmolLM2"]
    assert lines[3].split()[1] == "gguf"


def test_rm_asks_unless_yes_and_names_the_models_when_one_is_missing(tmp_path, capsys, monkeypatch):
    path = fake_model(tmp_path, "old", MANIFEST)
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    assert main(["rm", "old", "--models-dir", str(tmp_path)]) == 1 and path.exists()
    monkeypatch.setattr("builtins.input", lambda prompt: "y")
    assert main(["rm", "old", "--models-dir", str(tmp_path)]) == 0 and not path.exists()
    fake_model(tmp_path, "other")
    assert main(["rm", "old", "--yes", "--models-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "No model 'old'" in err and "(there: other)" in err
    assert main(["rm", "other", "-y", "--models-dir", str(tmp_path)]) == 0 and not (tmp_path / "other").exists()


def test_show_prints_manifest_template_tool_format_decoding_and_file_status(tmp_path, tiny_phi3_dir, capsys):
    copy = tmp_path / "tiny"
    shutil.copytree(tiny_phi3_dir, copy)
    assert main(["show", "tiny", "--models-dir", str(tmp_path), "--template"]) == 0
    out = capsys.readouterr().out
    assert "architecture  phi3" in out and "tool calls    hermes" in out and "<|assistant|>" in out
    assert "all match their size and sha256" in out and "openvino_model.bin" in out
    weights = copy / "openvino_tokenizer.bin"
    weights.write_bytes(weights.read_bytes()[:-1] + b"x")  # same size, altered
    assert main(["show", str(copy)]) == 1
    assert "openvino_tokenizer.bin was altered" in capsys.readouterr().out


@pytest.mark.parametrize("text, seconds", [(300, 300.0), ("300", 300.0), ("5m", 300.0), ("1h30m", 5400.0),
                                           ("250ms", 0.25), (0, 0.0), (-1, None), ("-1", None), ("-1m", None)])
def test_durations_read_as_ollama_reads_keep_alive(text, seconds):
    assert parse_duration(text, "x") == seconds


@pytest.mark.parametrize("text", ["soon", "5 minutes", "m5", True])
def test_bad_durations_say_how_to_write_one(text):
    with pytest.raises(OptionsError):
        parse_duration(text, "x")


def serve_settings(argv):
    from ovchat.cli.serve import serve_settings as build
    return build(build_parser().parse_args(["serve", *argv]))


def test_one_model_serves_as_before_and_several_make_a_pool(tmp_path):
    one = serve_settings(["-m", str(tmp_path)])
    assert one.models is None and one.model == str(tmp_path)
    assert serve_settings([]).models is None and serve_settings([]).model is None
    a, b = fake_model(tmp_path, "a"), fake_model(tmp_path, "b")
    many = serve_settings(["-m", str(a), "-m", f"fast={b}", "--models-max", "1", "--idle-unload", "5m", "--pin", "a",
                           "--deterministic"])
    assert [(m.name, m.path, m.pinned) for m in many.models.models] == [("a", str(a), True), ("fast", str(b), False)]
    assert many.models.models_max == 1 and many.models.idle_unload_s == 300 and many.models.default_name == "a"
    arguments = many.model_engine_arguments(many.models.models[1])
    assert arguments["model"] == str(b) and arguments["deterministic"] is True
    folder = serve_settings(["--models-dir", str(tmp_path)])
    assert [m.name for m in folder.models.models] == ["a", "b"] and folder.models.models_max == 4
    alone = serve_settings(["-m", str(a), "--idle-unload", "5m"])  # a pool flag: one model, in the pool
    assert [m.name for m in alone.models.models] == ["a"] and alone.models.idle_unload_s == 300
    default = serve_settings(["--pin", "smollm2-135m-instruct-int4"]).models
    assert default.default_name == "smollm2-135m-instruct-int4" and default.models[0].pinned
    with pytest.raises(OptionsError, match="given twice"):
        serve_settings(["-m", str(a), "-m", f"a={b}"])
    with pytest.raises(OptionsError, match="--pin z"):
        serve_settings(["-m", str(a), "-m", str(b), "--pin", "z"])


def test_a_settings_file_gives_each_model_its_engine_options(tmp_path):
    (tmp_path / "m.toml").write_text("""
[server]
models_max = 3
memory_gb = 4.5
idle_unload = "10m"
default = "fast"

[models.chat]
path = "chat-model"
device = "GPU"
properties = { KV_CACHE_PRECISION = "u8" }
kv_cache_gb = 2
draft_model = "/models/draft"
max_concurrency = 4
pinned = true

[models.fast]
path = "/models/fast"
prompt_lookup = true
deterministic = true
idle_unload = -1
""")
    settings = serve_settings(["--config", str(tmp_path / "m.toml"), "--max-concurrency", "8"])
    pool = settings.models
    assert (pool.models_max, pool.memory_gb, pool.idle_unload_s, pool.default_name) == (3, 4.5, 600, "fast")
    chat, fast = pool.models
    assert chat.path == str(tmp_path / "chat-model") and chat.pinned and chat.load_at_start
    assert fast.idle_set and fast.idle_unload_s is None and not fast.pinned
    arguments = settings.model_engine_arguments(chat)
    assert arguments["device"] == "GPU" and arguments["KV_CACHE_PRECISION"] == "u8"
    assert arguments["draft_model"] == "/models/draft" and arguments["batching"].max_sequences == 4
    assert arguments["batching"].kv_cache_gb == 2
    arguments = settings.model_engine_arguments(fast)
    assert arguments["prompt_lookup"] and arguments["deterministic"] and arguments["batching"].max_sequences == 8
    assert serve_settings(["--config", str(tmp_path / "m.toml"), "--models-max", "1"]).models.models_max == 1
    (tmp_path / "bad.toml").write_text("[models.x]\npath = 'p'\nflavour = 'mint'\n")
    with pytest.raises(OptionsError, match="unknown key.*flavour"):
        serve_settings(["--config", str(tmp_path / "bad.toml")])
    (tmp_path / "broken.toml").write_text("[models.x\n")
    with pytest.raises(OptionsError, match="not valid TOML"):
        serve_settings(["--config", str(tmp_path / "broken.toml")])


def test_a_bare_name_finds_the_model_in_ovchats_cache_and_a_missing_one_says_where_it_looked(
        tmp_path, tiny_phi3_dir, monkeypatch):
    from ovchat.engine.errors import ModelError
    from ovchat.engine.model import resolve

    monkeypatch.setenv("OVCHAT_CACHE", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_phi3_dir, tmp_path / "models" / "tiny")
    assert resolve("tiny").path == tmp_path / "models" / "tiny"
    with pytest.raises(ModelError, match=f"name of a model in {tmp_path / 'models'}"):
        resolve("absent")
    (tmp_path / "tiny").mkdir()  # a path here comes first
    with pytest.raises(ModelError, match="is missing"):
        resolve("tiny")


def test_export_of_a_named_model_without_out_goes_to_the_cache_and_is_not_redone(tmp_path, tiny_phi3_dir, monkeypatch,
                                                                                    capsys):
    monkeypatch.setenv("OVCHAT_CACHE", str(tmp_path))
    shutil.copytree(tiny_phi3_dir, tmp_path / "models" / "gemma3-270m")
    assert main(["export", "gemma3-270m"]) == 0
    err = capsys.readouterr().err
    assert f"already exported in {tmp_path / 'models' / 'gemma3-270m'}" in err and "-m gemma3-270m" in err
