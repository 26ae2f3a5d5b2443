"""One ServerSettings for `ovchat serve`, create_app and the Ray app (server/settings.py): checked
on construction, built from the CLI's flags, and typed from Serve's arguments, which arrive as
strings from `serve run ...:app_builder key=value` and typed from a config file's `args`."""

import pytest

from ovchat.engine.errors import OptionsError
from ovchat.server.settings import RaySettings, ServerSettings, from_serve_args

PROPERTIES = {"KV_CACHE_PRECISION": "u8", "NUM_STREAMS": 1}


@pytest.mark.parametrize("args", [
    {"engine_options": '{"KV_CACHE_PRECISION": "u8", "NUM_STREAMS": 1}', "engine_process": "false",
     "conversation_affinity": "False", "allowed_hosts": "a.example,.corp.example"},                 # serve run key=value
    {"engine_options": dict(PROPERTIES), "engine_process": False,
     "conversation_affinity": False, "allowed_hosts": ["a.example", ".corp.example"]},              # a config file's args
], ids=["serve-run", "config-file"])
def test_serve_arguments_arrive_typed_dicts_as_dicts_and_bools_as_bools(args):
    settings = from_serve_args(args)
    assert settings.engine_options == PROPERTIES and settings.engine_process is False
    assert settings.ray.conversation_affinity is False
    assert settings.allowed_hosts == ("a.example", ".corp.example")
    assert settings.engine_arguments()["KV_CACHE_PRECISION"] == "u8"


def test_serve_arguments_none_numbers_and_auto():
    settings = from_serve_args({"max_tokens": "null", "request_timeout_s": "30", "num_replicas": "auto",
                                "num_cpus": "2", "max_replicas_per_node": "None"})
    assert settings.max_tokens is None and settings.request_timeout_s == 30.0
    assert settings.ray.autoscaling and settings.ray.threads == 2 and settings.ray.max_replicas_per_node is None
    assert from_serve_args({"num_replicas": "3"}).ray.num_replicas == 3


@pytest.mark.parametrize("args, message", [
    ({"engine_options": "{KV_CACHE_PRECISION: u8}"}, "engine_options: .* is not JSON"),
    ({"engine_options": "[1, 2]"}, "engine_options must be a dict"),
    ({"engine_process": "maybe"}, "engine_process='maybe' is not bool"),
    ({"num_replicas": "many"}, r"num_replicas \(--replicas\) must be a whole number >= 1 or 'auto'"),
    ({"port": "9000"}, "Serve's http_options choose the port"),
    ({"replica_count": "2"}, "unknown ovchat Ray app argument.*replica_count"),
    ({"engine_options": '{"device": "GPU"}'}, "engine_options may not set device"),
])
def test_bad_serve_arguments_are_refused_with_what_to_do(args, message):
    with pytest.raises(OptionsError, match=message):
        from_serve_args(args)


@pytest.mark.parametrize("fields, message", [
    ({"max_concurrency": 0}, r"max_concurrency \(--max-concurrency\) must be >= 1"),
    ({"max_concurrency": "8"}, "max_concurrency must be int, not '8'"),
    ({"engine_process": 1}, "engine_process must be bool, not 1"),
    ({"port": 70000}, r"port \(--port\) must be in 0..65535"),
    ({"max_tokens": 0}, r"max_tokens \(--max-tokens\) must be >= 1"),
    ({"log_level": "loud"}, "log_level .* must be one of"),
    ({"responses_max_count": 0}, r"responses_max_count \(--responses-max-count\) must be >= 1"),
    ({"responses_db": 5}, "responses_db must be str or None"),
    ({"ray": RaySettings(num_replicas=2, min_replicas=1, max_replicas=4)}, None),
])
def test_settings_are_checked_on_construction(fields, message):
    if message is None:
        assert ServerSettings(**fields).ray.num_replicas == 2
        return
    with pytest.raises(OptionsError, match=message) as raised:
        ServerSettings(**fields)
    assert raised.value.param == next(iter(fields))


def test_ray_settings_are_checked_too():
    with pytest.raises(OptionsError, match=r"min_replicas \(--min-replicas\) must be >= 1 and <= max_replicas"):
        RaySettings(min_replicas=5, max_replicas=2)
    with pytest.raises(OptionsError, match="num_cpus"):
        RaySettings(num_cpus=0)


def test_serve_flags_become_one_settings_object_ray_flags_its_ray_part():
    from ovchat.cli.main import build_parser
    from ovchat.cli.serve import serve_settings

    plain = serve_settings(build_parser().parse_args(["serve", "-m", "phi3", "--served-model-name", "x", "--port", "0"]))
    assert plain.ray is None and plain.engine_process and (plain.model, plain.served_model_name, plain.port) == ("phi3", "x", 0)
    assert plain.engine_options["performance_hint"] == "LATENCY" and plain.engine_options["cache_dir"] is True
    on_ray = serve_settings(build_parser().parse_args(
        ["serve", "--ray", "--replicas", "auto", "--max-replicas", "6", "--no-affinity", "--in-process",
         "-P", "KV_CACHE_PRECISION=u8", "--max-concurrency", "8"]))
    assert on_ray.ray.autoscaling and on_ray.ray.max_replicas == 6 and on_ray.ray.conversation_affinity is False
    assert on_ray.engine_process is False and on_ray.engine_options["KV_CACHE_PRECISION"] == "u8"
    assert on_ray.max_concurrency == 8
    with pytest.raises(OptionsError, match=r"--max-concurrency"):
        serve_settings(build_parser().parse_args(["serve", "--max-concurrency", "0"]))
    assert (plain.store_responses, plain.responses_db, plain.responses_max_count) == (True, None, 10_000)
    kept = serve_settings(build_parser().parse_args(["serve", "--no-store", "--responses-db", "r.sqlite",
                                                     "--responses-max-count", "5", "--responses-max-age-days", "0.5"]))
    assert (kept.store_responses, kept.responses_db, kept.responses_max_count, kept.responses_max_age_days) == (
        False, "r.sqlite", 5, 0.5)
    with pytest.raises(OptionsError, match=r"--responses-max-age-days"):
        serve_settings(build_parser().parse_args(["serve", "--responses-max-age-days", "0"]))


def test_create_app_reads_the_same_settings():
    from ovchat.server.app import create_app

    app = create_app(lambda: None, ServerSettings(api_key="k", max_queue=3, host="0.0.0.0",
                                                         store_responses=False))
    assert app.state.ovchat.config.max_queue == 3
    assert ServerSettings(host="0.0.0.0", api_key="k").door().keyed
