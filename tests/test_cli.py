"""The `ovchat` command as a user runs it: a subprocess, its output and exit code."""

import json
import subprocess
import sys

import pytest


def ovchat(*args, stdin=None, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "ovchat", *map(str, args)], input=stdin, capture_output=True,
                          text=True, env=env, timeout=timeout)


@pytest.mark.default_model
def test_generate_json_has_text_counts_and_metrics(default_model_dir):
    run = ovchat("generate", "-m", default_model_dir, "-n", "24", "--json", "What is the capital of France?")
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert "Paris" in data["text"]
    assert data["output_tokens"] > 0 and data["input_tokens"] > 0
    assert data["metrics"]["ttft_ms"] > 0 and data["load"]["load_ms"] > 0


@pytest.mark.default_model
def test_chat_streams_answers_resets_and_exits(default_model_dir):
    run = ovchat("chat", "-m", default_model_dir, "-n", "12", stdin="What is the capital of France?\n/reset\nHi\n/exit\n")
    assert run.returncode == 0, run.stderr
    assert "Paris" in run.stdout
    assert "history cleared" in run.stderr
    assert "attention: PA" in run.stderr   # long chats stay fast on PagedAttention (cli.cmd_chat)


@pytest.mark.default_model
def test_chat_attention_backend_can_be_chosen(default_model_dir):
    run = ovchat("chat", "-m", default_model_dir, "-n", "12", "-P", "ATTENTION_BACKEND=SDPA",
                 stdin="What is the capital of France?\n/exit\n")
    assert run.returncode == 0, run.stderr
    assert "attention: SDPA" in run.stderr and "Paris" in run.stdout


@pytest.mark.default_model
def test_demo_streams_the_seeds_prompt_and_prints_metrics(default_model_dir):
    run = ovchat("demo", "-m", default_model_dir, "-n", "16")
    assert run.returncode == 0, run.stderr
    assert "can you introduce yourself?" in run.stdout and "TTFT" in run.stdout and "TPOT" in run.stdout


def test_devices_lists_the_cpu():
    run = ovchat("devices")
    assert run.returncode == 0 and run.stdout.startswith("CPU")


def test_without_the_default_model_the_error_names_the_command(tmp_path):
    import os
    run = ovchat("generate", "hello", env={**os.environ, "OVCHAT_CACHE": str(tmp_path)})
    assert run.returncode == 1
    assert "ovchat export default" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.default_model
def test_an_absent_gpu_is_one_clear_line(default_model_dir):
    run = ovchat("generate", "-m", default_model_dir, "-d", "GPU.1", "hello")
    if any(line.startswith("GPU") for line in ovchat("devices").stdout.splitlines()):
        pytest.skip("this machine has a GPU")
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1].startswith("ovchat: Device GPU.1 is not available")


@pytest.mark.parametrize("args, message", [
    (["-n", "0"], "max_new_tokens"),
    (["--top-p", "1.5"], "top_p"),
    (["--temperature", "-1"], "temperature"),
    (["-P", "NOEQUALS"], "KEY=VALUE"),
])
def test_invalid_flags_are_one_clear_line(default_model_dir, args, message):
    run = ovchat("generate", "-m", default_model_dir, *args, "hello")
    assert run.returncode == 1
    assert message in run.stderr and "Traceback" not in run.stderr


def test_info_describes_a_model(default_model_dir):
    run = ovchat("info", default_model_dir)
    data = json.loads(run.stdout)
    assert data["format"] == "openvino" and data["context_length"] and data["manifest"]["recipe"]


def test_an_unforeseen_failure_is_one_line_and_the_traceback_is_on_demand(monkeypatch, capsys):
    from ovchat.cli import main as cli, runtime

    def broken(args):
        raise RuntimeError("Exception from src/inference/src/cpp/core.cpp:84:\nmore")

    monkeypatch.setattr(runtime, "cmd_devices", broken)
    assert cli.main(["devices"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ovchat: unexpected RuntimeError: Exception from src/inference")
    monkeypatch.setenv("OVCHAT_DEBUG", "1")
    with pytest.raises(RuntimeError):
        cli.main(["devices"])


def test_a_model_without_a_chat_template_completes_raw_text_and_says_so_once(tiny_phi3_dir, tmp_path):
    import json as json_module
    import re
    import shutil

    bare = tmp_path / "no-template"  # the tiny Phi-3 with its template removed, as a base model's GGUF comes
    shutil.copytree(tiny_phi3_dir, bare)
    (bare / "chat_template.jinja").unlink(missing_ok=True)
    config = json_module.loads((bare / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (bare / "tokenizer_config.json").write_text(json_module.dumps(config))
    xml = bare / "openvino_tokenizer.xml"
    xml.write_text(re.sub(r'<chat_template value="[^"]*"\s*/>', "", xml.read_text()))
    run = ovchat("generate", "-m", bare, "-n", "4", "--no-warmup", "Once upon a time")
    assert run.returncode == 0, run.stderr
    assert run.stderr.count("no chat template") == 1 and "raw text" in run.stderr
    refused = ovchat("generate", "-m", bare, "-n", "4", "--no-warmup", "--system", "Be brief.", "Once upon a time")
    assert refused.returncode == 1 and "drop --system" in refused.stderr


def test_serve_refuses_a_gguf_genai_cannot_run_before_opening_its_port(tmp_path):
    from test_model_files import gguf_bytes

    path = tmp_path / "phi.gguf"
    path.write_bytes(gguf_bytes({"general.architecture": (8, "phi3")}, [("blk.0.attn_qkv.weight", 3)]))
    run = ovchat("serve", "-m", path, "--port", "1", timeout=120)  # port 1: it must fail before binding
    assert run.returncode == 1 and "Uvicorn running" not in run.stderr
    assert run.stderr.strip().splitlines() == [
        f"ovchat: phi.gguf cannot run directly: openvino_genai's GGUF reader does not take its architecture 'phi3' "
        f"(it runs llama, qwen2, qwen3). Export it first, which does: `ovchat export {path} OUT`, then load OUT."]
