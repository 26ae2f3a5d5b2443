"""The server benchmark's parts: SSE parsing and timing, percentiles, the launcher's cleanup, the
scenario's plan and report. Fast tests use a fake OpenAI-compatible server on 127.0.0.1; one slow
test runs llama-cpp-python's real server on the default GGUF."""

import json
import os
import sys
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ovchat.benchmarks import report, server_report, server_scenario
from ovchat.benchmarks.backends import ModelFiles
from ovchat.benchmarks.registry import SCENARIOS
from ovchat.benchmarks.scenarios import QUICK
from ovchat.benchmarks.server_launch import ServerSpec, ServerStartError, launched
from ovchat.benchmarks.server_load import (make_prompt, percentile, run_load, sse_events, stream_chat,
                                           summarize_load, RequestResult)

pytestmark = pytest.mark.timeout(900)  # a server started per test; llama.cpp's under two streams is the slowest

TOKEN_DELAY_S = 0.02
FIRST_TOKEN_DELAY_S = 0.1


class FakeOpenAI(BaseHTTPRequestHandler):
    """Streams `max_tokens` one-word chunks as the OpenAI API does, chunked like uvicorn; the word
    is the prompt's last word, so cross-talk between concurrent requests would show. A request
    with `ignore_eos` gets a 400 naming it when the server class says so. With a `barrier`, no
    stream starts before that many are in flight: overlap is then an event, not a timing."""
    protocol_version = "HTTP/1.1"
    send_usage = True
    refuse_ignore_eos = False
    in_flight = 0
    peak_in_flight = 0
    lock = threading.Lock()
    barrier = None

    def log_message(self, *args):
        pass

    def _chunk(self, payload: str) -> None:
        data = payload.encode()
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.refuse_ignore_eos and "ignore_eos" in body:
            error = json.dumps({"error": {"message": "ignore_eos is not supported", "type": "invalid_request_error",
                                          "param": "ignore_eos", "code": "unsupported_parameter"}}).encode()
            self.send_response(400)
            self.send_header("Content-Length", str(len(error)))
            self.end_headers()
            self.wfile.write(error)
            return
        cls = type(self)
        with cls.lock:
            cls.in_flight += 1
            cls.peak_in_flight = max(cls.peak_in_flight, cls.in_flight)
        if self.barrier is not None:
            self.barrier.wait()  # a client that never has that many in flight breaks it after its timeout
        self._stream(body)

    def _ended(self) -> None:
        # before [DONE]: once the client reads it, it may send its next request before this thread runs again
        cls = type(self)
        with cls.lock:
            cls.in_flight -= 1

    def _stream(self, body: dict) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        word = body["messages"][-1]["content"].split()[-1]
        event = lambda obj: self._chunk(f"data: {json.dumps(obj)}\n\n")
        event({"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]})
        self._chunk(": keep-alive\n\n")
        time.sleep(FIRST_TOKEN_DELAY_S)
        for i in range(body["max_tokens"]):
            if i:
                time.sleep(TOKEN_DELAY_S)
            event({"choices": [{"index": 0, "delta": {"content": f" {word}"}, "finish_reason": None}]})
        event({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]})
        if self.send_usage and body.get("stream_options", {}).get("include_usage"):
            event({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": body["max_tokens"],
                                            "total_tokens": 7 + body["max_tokens"]}})
        self._ended()
        self._chunk("data: [DONE]\n\n")
        self._chunk("")  # the last chunk: zero length

    def do_GET(self):
        payload = json.dumps({"object": "list", "data": [{"id": "fake-model", "object": "model"}]}).encode()
        self.send_response(200 if self.path in ("/v1/models", "/health") else 404)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def fake_server(request):
    attrs = dict(getattr(request, "param", {}))
    if "rendezvous" in attrs:
        attrs["barrier"] = threading.Barrier(attrs.pop("rendezvous"), timeout=60)
    handler = type("Handler", (FakeOpenAI,), dict(attrs, in_flight=0, peak_in_flight=0, lock=threading.Lock()))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def test_percentile_interpolates_between_closest_ranks():
    values = list(range(1, 101))
    assert percentile(values, 50) == 50.5
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([5.0], 99) == 5.0 and percentile([], 50) is None
    assert percentile([3, 1, 2], 0) == 1 and percentile([3, 1, 2], 100) == 3


def test_sse_events_join_data_lines_and_skip_comments():
    import io
    stream = io.BytesIO(b": comment\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\nevent: x\ndata: [DONE]\n\n")
    assert list(sse_events(stream)) == ['{"a":\n1}', "[DONE]"]


def test_a_stream_is_timed_from_its_content_chunks_and_counted_by_usage(fake_server):
    url, _ = fake_server
    result = stream_chat(url, "hello world", max_tokens=6, model="fake-model")
    assert result.ok and result.error is None
    assert result.output_tokens == 6 and result.tokens_counted_by == "usage" and result.prompt_tokens == 7
    assert result.finish_reason == "length"
    # Lower bounds only (the fake sleeps at least that long; a loaded machine only adds), and the
    # time to first token is not in TPOT: TTFT + TPOT x (tokens - 1) fits in the request's latency.
    assert result.ttft_ms >= FIRST_TOKEN_DELAY_S * 1000 * 0.9   # the role delta does not count as a token
    assert result.tpot_ms >= TOKEN_DELAY_S * 1000 * 0.9
    assert result.ttft_ms + result.tpot_ms * (result.output_tokens - 1) <= result.latency_ms + 1e-6


@pytest.mark.parametrize("fake_server", [{"send_usage": False}], indirect=True)
def test_without_usage_the_content_chunks_are_counted(fake_server):
    url, _ = fake_server
    result = stream_chat(url, "hello", max_tokens=5)
    assert result.ok and result.output_tokens == 5 and result.tokens_counted_by == "chunks"


@pytest.mark.parametrize("fake_server", [{"rendezvous": 4}], indirect=True)
def test_a_load_runs_at_most_c_streams_at_once_and_sums_the_tokens(fake_server):
    url, handler = fake_server
    prompts = [make_prompt(5, seed=i) for i in range(8)]
    result = run_load(url, prompts, concurrency=4, max_tokens=5)
    assert result.requests == 8 and result.failed == 0 and result.output_tokens == 40
    assert handler.peak_in_flight == 4 and not handler.barrier.broken  # 4 at once, twice, never 5
    assert result.aggregate_tokens_per_s == pytest.approx(40 / result.wall_s)
    ttfts = sorted(r.ttft_ms for r in result.results)
    assert result.ttft_ms_p50 == pytest.approx(percentile(ttfts, 50)) and result.ttft_ms_p99 <= ttfts[-1]


@pytest.mark.parametrize("fake_server", [{"refuse_ignore_eos": True}], indirect=True)
def test_a_refused_field_is_a_failed_request_and_the_probe_drops_it(fake_server):
    url, _ = fake_server
    result = stream_chat(url, "hi", 3, extra_fields={"ignore_eos": True})
    assert not result.ok and "HTTP 400" in result.error and "ignore_eos" in result.error
    assert server_scenario.accepted_extra_fields(url, "fake-model", {"ignore_eos": True}) == {}
    assert server_scenario.served_model(url) == "fake-model"


def test_accepted_fields_are_kept(fake_server):
    url, _ = fake_server
    assert server_scenario.accepted_extra_fields(url, "fake-model", {"ignore_eos": True}) == {"ignore_eos": True}


def test_a_closed_port_is_an_error_result_not_an_exception():
    from ovchat.benchmarks.server_launch import free_port
    result = stream_chat(f"http://127.0.0.1:{free_port()}", "hi", 3, timeout_s=5)
    assert not result.ok and "Connection" in result.error
    summary = summarize_load(1, [result, RequestResult(True, 10.0, 2.0, 30.0, 5)], wall_s=0.5)
    assert summary.failed == 1 and summary.output_tokens == 5 and summary.aggregate_tokens_per_s == 10.0


# ---- the launcher --------------------------------------------------------------------------------

HEALTHY_SERVER = """
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def _pid_on(log: Path) -> int:
    return int(log.read_text().split("PID ")[1].split()[0])


def test_a_server_that_never_gets_healthy_is_killed_and_reported(tmp_path):
    log = tmp_path / "never.log"
    script = "import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('PID', os.getpid(), flush=True); time.sleep(120)"
    stops = []
    spec = ServerSpec("never", [sys.executable, "-c", script, "{port}"], ready_timeout_s=1.5, stop_timeout_s=1)
    with pytest.raises(ServerStartError, match="not healthy .* within 2 s"):
        with launched(spec, log, on_stop=stops.append):
            pytest.fail("a server that never answers must not be yielded")
    assert stops and stops[0].killed  # it ignored SIGTERM: SIGKILL after stop_timeout_s
    assert _gone(_pid_on(log))


def test_a_server_that_exits_is_reported_with_its_log(tmp_path):
    spec = ServerSpec("crash", [sys.executable, "-c", "print('cannot load the model'); raise SystemExit(3)"])
    with pytest.raises(ServerStartError, match="exited with code 3(.|\n)*cannot load the model"):
        with launched(spec, tmp_path / "crash.log"):
            pass


def test_a_healthy_server_is_yielded_and_stopped_even_when_the_run_fails(tmp_path):
    script = f"import os; print('PID', os.getpid(), flush=True)\n{HEALTHY_SERVER}"
    spec = ServerSpec("ok", [sys.executable, "-c", script, "{port}"], ready_timeout_s=30)
    stops = []
    with pytest.raises(RuntimeError, match="the benchmark failed"):
        with launched(spec, tmp_path / "ok.log", on_stop=stops.append) as url:
            assert url.startswith("http://127.0.0.1:")
            raise RuntimeError("the benchmark failed")
    assert stops and not stops[0].killed
    assert _gone(_pid_on(tmp_path / "ok.log"))


# ---- the scenario's plan, figures and report ------------------------------------------------------

def test_the_plan_gives_fresh_prompts_per_request_and_repetition_the_same_for_every_backend():
    files = ModelFiles("m", ir="dir")
    profile = replace(QUICK, server_concurrency=(1, 4), server_prompts=(32, 128), server_rounds=2)
    first, again, second = (server_scenario.plan(profile, rep, files) for rep in (0, 0, 1))
    assert first == again
    assert [(load["concurrency"], load["prompt_target_tokens"], len(load["prompts"])) for load in first] == \
        [(1, 32, 2), (1, 128, 2), (4, 32, 8), (4, 128, 8)]
    prompts = [p for load in first + second for p in load["prompts"]]
    assert len(set(prompts)) == len(prompts)
    assert len(first[1]["prompts"][0].split()) > 3 * len(first[0]["prompts"][0].split())


def test_llama_server_gets_its_parallel_slots_and_a_context_for_all_of_them():
    files = ModelFiles("m", ir="dir", gguf="m.gguf")
    profile = replace(QUICK, server_prompts=(32, 512), server_new_tokens=64)
    command = server_scenario.server_spec("llama-server", files, 16, profile).command
    context = server_scenario.per_request_context(profile)
    assert command[command.index("--parallel") + 1] == "16"
    assert int(command[command.index("-c") + 1]) == 16 * context and context >= 512 + 64
    assert command[command.index("--host") + 1] == "127.0.0.1"
    ovchat = server_scenario.server_spec("ovchat", files, 16, replace(profile, ovchat_serve_cmd="/x/bin/ovchat serve"))
    assert ovchat.command[:2] == ["/x/bin/ovchat", "serve"] and ovchat.command[ovchat.command.index("-m") + 1] == "dir"
    assert ovchat.command[2] == "--in-process" and "--engine-process" not in ovchat.command
    child = server_scenario.server_spec("ovchat-process", files, 16, profile).command
    assert child[child.index("serve") + 1] == "--engine-process" and "--in-process" not in child


def _load(concurrency: int, target: int, tokens_per_s: float, ttft: float) -> dict:
    results = [{"ok": True, "ttft_ms": ttft, "tpot_ms": 10.0, "output_tokens": 8}]
    return {"concurrency": concurrency, "prompt_target_tokens": target, "prompt_words": target, "max_tokens": 8,
            "requests": 1, "failed": 0, "wall_s": 1.0, "output_tokens": 8, "aggregate_tokens_per_s": tokens_per_s,
            "ttft_ms_p50": ttft, "ttft_ms_p99": ttft, "tpot_ms_p50": 10.0, "prompt_tokens_median": 40,
            "results": results, "eos_ignored": True}


def test_the_report_shows_the_speedup_at_16_streams_against_the_targets(tmp_path):
    from ovchat.benchmarks.pairing import paired_ratios
    speeds = {"ovchat": 400.0, "ovchat-single": 50.0, "llama-server": 500.0}
    reps = {b: {"loads": [_load(1, 32, s / 4, 20.0), _load(16, 32, s, 80.0)], "servers": []} for b, s in speeds.items()}
    scenario = SCENARIOS["server"]
    figures = {b: {0: scenario.figures(rep)} for b, rep in reps.items()}
    ratios = paired_ratios(figures, {"scenario": "server", "model": "m", "device": "CPU"})
    head = {h["figure"]: h for h in server_report.headline({"ratios": ratios})}
    single = head["aggregate tokens/s, ovchat serve ÷ engine one at a time (in process), 32-token prompt, 16 streams"]
    assert single["value"] == 8.0 and single["met"] is True and single["target"] == ">= 4.0"
    llama = head["aggregate tokens/s, ovchat serve ÷ llama-server --parallel C, 32-token prompt, 16 streams"]
    assert llama["value"] == 0.8 and llama["met"] is False
    entries = [{"scenario": "server", "model": "m", "device": "CPU", "backend": b, "status": "ok",
                "data": scenario.summarize([rep])} for b, rep in reps.items()]
    text = "\n".join(server_report.server_section({"entries": entries, "ratios": ratios}))
    assert "## Servers under concurrent streams" in text and "| 8.00 (8.00–8.00, n=1) | >= 4.0 | yes |" in text
    assert "| m | ovchat serve (in process) | 40 | 16 | 1 (0) | 80 | 80 | 10.0 | 400.0 | 8 | yes |" in text


def test_server_scenario_is_registered_with_its_backends():
    scenario = SCENARIOS["server"]
    assert set(scenario.backends) == {"ovchat", "llamacpp", "llama-server", "ovchat-single", "ovchat-process"}
    assert "ovchat-client" in SCENARIOS["coldstart"].backends
    assert report.server_section is server_report.server_section


# ---- the real llama_cpp.server ------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.default_model
def test_llama_cpp_server_under_two_streams(tmp_path, default_model_dir):
    from ovchat.benchmarks import runner
    files = runner.resolve_model("default")
    profile = replace(QUICK, server_concurrency=(2,), server_prompts=(32,), server_new_tokens=8, server_rounds=1,
                      timeout_s=300)
    reason = server_scenario.unavailable("llamacpp", files, profile)
    if reason:
        pytest.skip(reason)

    class Ctx:
        out = tmp_path

    Ctx.profile = profile
    data = server_scenario.server_rep(Ctx, files, "CPU", "llamacpp", rep=0)
    [load] = data["loads"]
    assert load["requests"] == 2 and load["failed"] == 0, load["results"]
    assert load["eos_ignored"] and all(r["output_tokens"] == 8 for r in load["results"])
    assert load["ttft_ms_p50"] > 0 and load["aggregate_tokens_per_s"] > 0
    assert data["servers"][0]["stop"]["returncode"] is not None


# ---- point 5: a fresh client process ---------------------------------------------------------------

def test_the_client_is_the_serve_command_with_generate():
    from ovchat.benchmarks import client_first_token as client_start
    profile = replace(QUICK, ovchat_serve_cmd="/x/.venv/bin/ovchat serve")
    assert client_start.client_command(profile, "http://127.0.0.1:9", "q", 16) == \
        ["/x/.venv/bin/ovchat", "generate", "--server", "http://127.0.0.1:9", "-n", "16", "q"]
    default = client_start.client_command(QUICK, "http://127.0.0.1:9", "q", 4)
    assert default[:4] == [sys.executable, "-m", "ovchat", "generate"]


# Prints its first word, waits until its reader has taken every byte of it (the pipe holds none),
# then 0.6 s more before the rest: the reader's first-byte time is then 0.6 s before the exit
# however late the machine lets it read.
FIRST_WORD_THEN_MORE = """
import array, fcntl, sys, termios, time
time.sleep(0.3)
sys.stdout.write("Paris"); sys.stdout.flush()
unread = array.array("i", [1])
while unread[0]:
    fcntl.ioctl(1, termios.FIONREAD, unread)
    time.sleep(0.01)
time.sleep(0.6)
print(" is")
"""


def test_a_client_is_timed_to_its_first_printed_byte_not_its_exit():
    from ovchat.benchmarks import client_first_token as client_start
    timing = client_start.time_client([sys.executable, "-c", FIRST_WORD_THEN_MORE], timeout_s=30)
    assert timing["start_to_first_token_s"] >= 0.3
    assert timing["total_s"] - timing["start_to_first_token_s"] >= 0.6
    with pytest.raises(RuntimeError, match="exited with code 2"):
        client_start.time_client([sys.executable, "-c", "import sys; sys.exit(2)"], timeout_s=30)


def test_the_server_streams_flag_sets_the_concurrencies_and_leaves_the_rest():
    import argparse
    from ovchat.benchmarks import cli
    parser = cli.setup_arg_parser(argparse.ArgumentParser())
    profile = cli.profile_from(parser.parse_args(["--server-streams", "16", "--reps", "1"]))
    assert profile.server_concurrency == (16,) and profile.server_reps == 1
    assert cli.profile_from(parser.parse_args([])).server_concurrency == (1, 4, 16)
