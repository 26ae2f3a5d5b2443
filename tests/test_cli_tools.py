"""`ovchat generate/chat --tools FILE` on the default model: the calls are shown, the chat asks
for each call's result and answers after it; --tools with --server is refused, not ignored."""

import json

import pytest

from test_cli import ovchat

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40}}, "required": ["city"]}}}]


@pytest.fixture
def tools_file(tmp_path):
    path = tmp_path / "tools.json"
    path.write_text(json.dumps(TOOLS))
    return path


@pytest.mark.default_model
def test_generate_prints_the_call_as_a_json_line(default_model_dir, tools_file):
    run = ovchat("generate", "-m", default_model_dir, "--greedy", "-n", "48", "--tools", tools_file,
                 "--tool-choice", "get_weather", "What is the weather in Paris?")
    assert run.returncode == 0, run.stderr
    (line,) = [json.loads(line) for line in run.stdout.splitlines() if line.startswith('{"tool_call"')]
    assert line["tool_call"]["name"] == "get_weather" and isinstance(line["tool_call"]["arguments"]["city"], str)


@pytest.mark.default_model
def test_chat_asks_for_the_tools_result_then_answers(default_model_dir, tools_file):
    run = ovchat("chat", "-m", default_model_dir, "--greedy", "-n", "48", "--tools", tools_file, "--tool-choice",
                 "get_weather", stdin="What is the weather in Paris?\n18 C and sunny\n/exit\n")
    assert run.returncode == 0, run.stderr
    assert '[get_weather({"city": ' in run.stdout and "] result> " in run.stdout


def test_a_tools_file_that_is_not_json_is_one_clear_line(tmp_path):
    bad = tmp_path / "tools.json"
    bad.write_text("[{")
    run = ovchat("generate", "--tools", bad, "hello")
    assert run.returncode == 1 and "--tools" in run.stderr and "Traceback" not in run.stderr


def test_tools_with_a_server_are_refused_not_ignored(tools_file):
    run = ovchat("generate", "--server", "http://127.0.0.1:9", "--tools", tools_file, "hello")
    assert run.returncode == 1 and "--tools" in run.stderr
