"""The soak benchmark's verdict (benchmarks/soak.py) on made-up samples; the soak itself runs for minutes."""

from types import SimpleNamespace

from ovchat.benchmarks.soak import Counts, Sample, verdict

ARGS = SimpleNamespace(in_process=False, serve_cmd=None, model=None, streams=8, minutes=10, disconnect=0.2, within=5.0)


def test_rss_is_judged_from_its_value_at_one_minute():
    warm_up = [Sample(0, 300, 0), Sample(30, 420, 100)]   # the first minute may grow: not judged
    flat = verdict(warm_up + [Sample(60, 450, 200), Sample(300, 460, 1000), Sample(600, 455, 2000)], Counts(2000), ARGS, 0)
    assert flat["flat"] and flat["rss_mb_at_1_min"] == 450 and flat["max_change_after_1_min_pct"] == 2.22
    growing = verdict(warm_up + [Sample(60, 450, 200), Sample(600, 480, 2000)], Counts(2000), ARGS, 0)
    assert not growing["flat"] and growing["max_change_after_1_min_pct"] == 6.67
    assert growing["kb_per_request_after_1_min"] == round(30 * 1024 / 1800, 2)


def test_ovchat_bench_soak_runs_the_soak_with_the_bench_flags(monkeypatch, tmp_path):
    from ovchat.benchmarks import cli, soak

    seen = []
    monkeypatch.setattr(soak, "main", lambda argv: seen.append(argv) or 0)
    parser = cli.setup_arg_parser(__import__("argparse").ArgumentParser())
    args = parser.parse_args(["--soak", "3", "--server-streams", "4", "--ovchat-serve-cmd", "x serve --in-process",
                              "--out", str(tmp_path / "r")])
    assert cli.handle(args) == 0
    assert seen == [["--minutes", "3.0", "--out", str(tmp_path / "r" / "soak.json"), "--streams", "4",
                     "--serve-cmd", "x serve --in-process"]]
    assert cli.handle(parser.parse_args(["--soak", "1", "--model", "a", "--model", "b"])) == 2


def test_each_request_is_counted_finished_disconnected_or_failed_from_its_stream():
    import http.server
    import threading
    from ovchat.benchmarks.soak import one_request

    class SSE(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            failing = b"fail" in body
            events = ['{"error": {"message": "boom"}}'] if failing else ['{"choices": []}'] * 6 + ["[DONE]"]
            for event in events:
                self.wfile.write(f"data: {event}\n\n".encode())

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SSE)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = "http://127.0.0.1:%d" % server.server_address[1]
    counts, lock = Counts(), threading.Lock()
    try:
        one_request(url, "q", 8, False, counts, lock)
        one_request(url, "q", 8, True, counts, lock)       # hangs up after 4 chunks
        one_request(url, "fail", 8, False, counts, lock)
    finally:
        server.shutdown()
    assert (counts.finished, counts.disconnected, counts.errors) == (1, 1, 1)
    assert "boom" in counts.error_samples[0]
