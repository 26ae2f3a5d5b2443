"""benchmarks/child.py, the one protocol between a measurement and its child process: jobs in on
stdin, one JSON answer each, an error or a silent or dead child a WorkerError, never a hang."""

import pytest

from ovchat.benchmarks.child import Child, WorkerError, run_once

CHILD = '''
import os, sys, time
from ovchat.benchmarks.child import serve

def handle(job):
    print("chatter on stdout")         # the runtimes print too: it must not corrupt the answers
    os.write(1, b"C-level chatter\\n")
    if job.get("die"):
        print("dying now", file=sys.stderr, flush=True)
        os._exit(3)
    if job.get("sleep"):
        time.sleep(job["sleep"])
    if job.get("fail"):
        raise ValueError("no such model; pass --model")
    return {"echo": job["n"], "size": len(job.get("blob", "")), "pid": os.getpid()}

sys.exit(serve(handle))
'''


@pytest.fixture
def child_module(tmp_path):
    (tmp_path / "echo_child.py").write_text(CHILD)
    return tmp_path


def test_one_child_answers_many_jobs_in_order_whatever_it_prints(child_module):
    with Child("echo_child", cwd=child_module) as child:
        answers = [child.ask({"n": n}, timeout_s=60) for n in range(3)]
        assert [a["echo"] for a in answers] == [0, 1, 2]
        assert len({a["pid"] for a in answers}) == 1
    assert child.process.returncode == 0  # it ends when its stdin closes


def test_a_large_job_travels_whole(child_module):
    with Child("echo_child", cwd=child_module) as child:
        assert child.ask({"n": 1, "blob": "x" * 3_000_000}, timeout_s=60)["size"] == 3_000_000


def test_an_error_is_raised_with_its_type_and_the_child_keeps_answering(child_module):
    with Child("echo_child", cwd=child_module) as child:
        with pytest.raises(WorkerError, match="ValueError: no such model; pass --model"):
            child.ask({"n": 1, "fail": True}, timeout_s=60)
        assert child.ask({"n": 2}, timeout_s=60)["echo"] == 2


def test_a_silent_child_is_killed_at_its_timeout(child_module):
    child = Child("echo_child", cwd=child_module)
    with pytest.raises(WorkerError, match="echo_child timed out after 1 s"):
        child.ask({"n": 1, "sleep": 600}, timeout_s=1)
    assert child.process.returncode is not None  # killed, not left behind


def test_a_dead_child_is_an_error_with_the_tail_of_its_log(child_module, tmp_path):
    log = tmp_path / "logs" / "child.log"
    with pytest.raises(WorkerError, match=r"exited with code 3 and no result \(log: .*child.log\):\n(.|\n)*dying now"):
        run_once("echo_child", {"n": 1, "die": True}, timeout_s=60, log_path=log, cwd=child_module)
    assert '== {"n": 1, "die": true}' in log.read_text()  # the job is logged before its output
