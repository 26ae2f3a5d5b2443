"""The decoding a newcomer meets: the model's generation_config.json where it states settings,
else the measured default; plain greedy one flag away; the engine's own default stays greedy."""

import json
import subprocess
import sys

import pytest

from ovchat.engine import GenerationOptions
from ovchat.cli.flags import generation_options
from ovchat.engine.model import DEFAULT_DECODING, resolve
from ovchat.cli.main import build_parser

from loops import ends_in_loop


def model_folder(tmp_path, generation_config):
    for name in ("openvino_model.xml", "openvino_model.bin", "openvino_tokenizer.xml", "openvino_detokenizer.xml"):
        (tmp_path / name).write_text("x")
    (tmp_path / "generation_config.json").write_text(json.dumps(generation_config))
    return resolve(tmp_path)


def options_for(info, *flags):
    return generation_options(build_parser().parse_args(["generate", *flags, "hello"]), info)


def test_a_model_stating_no_decoding_gets_the_measured_default(tmp_path):
    info = model_folder(tmp_path, {"eos_token_id": 2})
    assert info.generation_defaults == DEFAULT_DECODING
    assert options_for(info) == GenerationOptions(**DEFAULT_DECODING)


def test_a_model_stating_its_decoding_gets_exactly_that(tmp_path):
    stated = {"do_sample": True, "temperature": 0.7, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.05}
    info = model_folder(tmp_path, {**stated, "eos_token_id": 2, "max_length": 100})
    assert info.generation_defaults == stated
    assert options_for(info) == GenerationOptions(**stated)


def test_flags_given_win_and_the_others_keep_the_models_values(tmp_path):
    info = model_folder(tmp_path, {"do_sample": True, "temperature": 0.6, "top_p": 0.9})
    options = options_for(info, "--top-p", "0.5", "-n", "12")
    assert (options.do_sample, options.temperature, options.top_p, options.max_new_tokens) == (True, 0.6, 0.5, 12)


def test_greedy_is_one_flag_away_whatever_the_model_says(tmp_path):
    info = model_folder(tmp_path, {"do_sample": True, "temperature": 0.6, "repetition_penalty": 1.2})
    assert options_for(info, "--greedy") == GenerationOptions()
    assert options_for(resolve(model_folder(tmp_path, {}).path), "--greedy") == GenerationOptions()


def test_the_measured_default_reaches_the_generation_config(tmp_path):
    import openvino_genai as ov_genai
    config = options_for(model_folder(tmp_path, {})).apply_to(ov_genai.GenerationConfig())
    assert not config.do_sample
    assert (config.repetition_penalty, config.frequency_penalty, config.presence_penalty) == pytest.approx((1.0, 0.5, 0.5))


def test_the_engine_default_stays_plain_greedy():
    options = GenerationOptions()
    assert options.greedy and options.repetition_penalty == 1.0
    assert options.frequency_penalty == options.presence_penalty == 0


def test_sample_and_greedy_together_are_refused():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["generate", "--sample", "--greedy", "hello"])


@pytest.mark.parametrize("text, cut_off, loops", [
    ("Hi. I'm a midwife. I'm a midwife. I'm a midwife. I'm a mid", True, True),
    ("Tea. A b. C d. A b. C d. A b. C d.", False, True),
    ("1. Tea\n2. Tea\n3. Tea", False, True),
    ("Paris is the capital of France. It is big. It has a tower.", False, False),
    ("I'm a midwife. I'm a midwife. Then I retired.", False, False),
    # a run of words said over and over with no sentence end inside it
    ("Tea. " + "so it's best to serve it hot, " * 3 + "so it's", True, True),
    ("Steam rises. " + "bubbles which create more steam " * 4, True, True),
    ("Ha ha ha, that was funny.", False, False),
    ("It is worth saying that it is worth saying that", True, False),
    ("Bring socks, socks, socks and a hat.", False, False),
])
def test_a_loop_of_repeated_sentences_is_recognised(text, cut_off, loops):
    assert ends_in_loop(text, cut_off) is loops


def test_the_demo_reads_well_and_says_how_it_decoded(default_model_dir):
    run = subprocess.run([sys.executable, "-m", "ovchat", "demo", "-m", str(default_model_dir)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    answer = run.stdout.split("[assistant] ", 1)[1].split("\nmodel ", 1)[0]
    assert "decoding greedy, frequency penalty 0.5, presence penalty 0.5 (--greedy" in run.stdout
    assert not ends_in_loop(answer, cut_off="(length)" in run.stdout), answer


def test_the_demo_with_greedy_is_the_seeds_path(default_model_dir):
    run = subprocess.run([sys.executable, "-m", "ovchat", "demo", "-m", str(default_model_dir), "--greedy", "-n", "16"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "decoding greedy (--greedy" in run.stdout
