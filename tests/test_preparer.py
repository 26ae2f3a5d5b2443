"""Starts that never wait on each other (engine/preparer.py, engine/structured.py), with fakes (no
model): a request whose constraint is new compiles off the preparing lane, so plain requests
behind it start; requests that need the same new constraint share its one compile."""

import threading
from types import SimpleNamespace

from ovchat.engine.errors import EngineError, OptionsError
from ovchat.engine.events import Accepted, End, Failed
from ovchat.engine.preparer import COMPILE_THREADS, Preparer
from ovchat.engine.stream import Handle
from ovchat.engine.structured import StructureChecker

WAIT_S = 10


class Recorder(list):
    def __init__(self):
        super().__init__()
        self.changed = threading.Event()

    def put(self, event):
        self.append(event)
        self.changed.set()

    def flush(self):
        pass


def fake_preparer(held: threading.Event, compiling: threading.Semaphore):
    """A Preparer whose "schema..." prompts compile until `held` is set (each compile that starts
    releases `compiling` once); other prompts need no compile."""
    def prepare(prompt, options):
        if prompt == "refuse":
            raise OptionsError("The JSON schema cannot be compiled: bad. Fix the JSON schema and try again.")
        return SimpleNamespace(name=prompt, structure=("json_schema", prompt) if prompt.startswith("schema") else None)

    def run(prepared, sink, handle):
        if prepared.structure is not None:  # the engine's _run compiles it first
            compiling.release()
            held.wait(WAIT_S)
        sink.put(Accepted(1))
    return Preparer(prepare, lambda structure: structure is None, run)


def test_a_plain_start_is_taken_while_every_compile_thread_is_busy_with_new_constraints():
    held, compiling = threading.Event(), threading.Semaphore(0)
    preparer = fake_preparer(held, compiling)
    try:
        schema_sinks = [Recorder() for _ in range(COMPILE_THREADS + 2)]  # more than the compile lane holds
        for i, sink in enumerate(schema_sinks):
            preparer.start(f"schema {i}", None, sink, Handle())
        for _ in range(COMPILE_THREADS):
            assert compiling.acquire(timeout=WAIT_S)  # every compile thread is busy now
        plain = Recorder()
        preparer.start("plain", None, plain, Handle())
        assert plain.changed.wait(WAIT_S) and plain == [Accepted(1)]
        assert not any(schema_sinks), "a request with a new constraint started before its compile ended"
        held.set()
        assert all(sink.changed.wait(WAIT_S) for sink in schema_sinks)
    finally:
        held.set()
        preparer.close()


def test_a_refused_or_cancelled_start_ends_on_its_sink_and_a_closed_preparer_refuses():
    held, compiling = threading.Event(), threading.Semaphore(0)
    preparer = fake_preparer(held, compiling)
    refused, cancelled, late = Recorder(), Recorder(), Recorder()
    preparer.start("refuse", None, refused, Handle())
    handle = Handle()
    handle.cancel()
    preparer.start("plain", None, cancelled, handle)
    assert refused.changed.wait(WAIT_S) and cancelled.changed.wait(WAIT_S)
    assert isinstance(refused[0], Failed) and isinstance(refused[0].error, OptionsError)
    assert cancelled == [End(None)]  # it never ran
    preparer.close()
    preparer.start("plain", None, late, Handle())
    assert isinstance(late[0], Failed) and isinstance(late[0].error, EngineError) and "closed" in str(late[0].error)


def test_requests_that_need_the_same_new_constraint_share_its_one_compile():
    checker = StructureChecker(tokenizer=None)
    compiles, entered, release = [], threading.Event(), threading.Event()

    def compile_(kind, text):
        compiles.append(text)
        entered.set()
        release.wait(WAIT_S)
    checker._compile = compile_
    structure = ("json_schema", '{"type": "object"}')
    threads = [threading.Thread(target=checker.check_structure, args=(structure,)) for _ in range(4)]
    threads[0].start()
    assert entered.wait(WAIT_S)
    for thread in threads[1:]:
        thread.start()
    assert not checker.known(structure) and all(thread.is_alive() for thread in threads)  # all held by the one compile
    release.set()
    for thread in threads:
        thread.join(WAIT_S)
    assert compiles == ['{"type": "object"}'] and checker.known(structure) and not checker.known(("regex", "[a-z]+"))
    assert checker.check_structure(structure) == 0.0 and compiles == ['{"type": "object"}']  # known: no compile


def test_a_constraint_that_failed_to_compile_fails_again_for_the_next_request():
    checker = StructureChecker(tokenizer=None)
    calls = []

    def compile_(kind, text):
        calls.append(text)
        raise OptionsError("The regex cannot be compiled: bad. Fix the regex and try again.")
    checker._compile = compile_
    for _ in range(2):
        try:
            checker.check_structure(("regex", "("))
        except OptionsError:
            pass
    assert calls == ["(", "("] and not checker.known(("regex", "(")) and checker.cached == (0, 0)
