"""`ovchat serve --ray` as a user runs it: a process that starts a local Ray, deploys the app and,
on SIGTERM, drains the request in flight, exits 0 and leaves none of the Ray processes it started."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("ray.serve", reason="the ray extra is not installed: pip install 'ovchat[ray]'")
psutil = pytest.importorskip("psutil")
pytestmark = pytest.mark.ray

from test_ray_serve import Streamed, free_port, stream_chat, wait_until  # noqa: E402
from server_harness import request  # noqa: E402

CLI = "from ovchat.cli.main import main; raise SystemExit(main())"


def test_sigterm_drains_exits_0_and_leaves_no_ray_process(tiny_phi3_dir, tmp_path):
    port = free_port()
    log = open(tmp_path / "serve.log", "w")
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-c", CLI, "serve", "--ray", "-m", str(tiny_phi3_dir), "--port", str(port),
                                "--replicas", "1", "--replica-cpus", "1", "--max-concurrency", "4", "--log-level", "warning"],
                               stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    ray_processes = []
    try:
        def healthy():
            """the app answers /health"""
            assert process.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                return request(url, "GET", "/health", timeout_s=5)[0] == 200
            except OSError:
                return False

        wait_until(healthy, timeout_s=240, every_s=0.5)
        print(f"\novchat serve --ray: healthy after {time.monotonic() - started:.1f} s")
        ray_processes = psutil.Process(process.pid).children(recursive=True)
        assert len(ray_processes) >= 3, ray_processes  # gcs_server, raylet, workers...
        in_flight = Streamed()
        stream = threading.Thread(target=stream_chat, args=(url, "Tell a story.", 400, in_flight))
        stream.start()
        assert in_flight.started.wait(60) and in_flight.status == 200, in_flight
        stopping = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 0, (tmp_path / "serve.log").read_text()[-3000:]
        print(f"ovchat serve --ray: exited 0 {time.monotonic() - stopping:.1f} s after SIGTERM")
        stream.join(30)
        assert not stream.is_alive()
        assert in_flight.done and in_flight.error is None and in_flight.completion_tokens == 400, in_flight  # drained
        wait_until(lambda: not [p for p in ray_processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE],
                   timeout_s=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        for leftover in ray_processes:  # a failed test still leaves nothing behind
            if leftover.is_running():
                leftover.kill()
        log.close()
