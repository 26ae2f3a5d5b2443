"""Requests started without waiting (Engine.start), and starts that never wait on each other.

Preparing a request (template, fit to the context, encode) takes milliseconds; compiling a new
structured-output constraint (a JSON schema, a tool set's grammar) can take far longer. So a
start runs in two lanes: every request is prepared on one thread, and one whose constraint
is new goes on to a second pool to compile it, freeing the first for the requests behind it.
Only requests that need the same new constraint wait for its one compile (StructureChecker).
A request cancelled before it reaches the runner never runs; what refuses it (a PromptError,
an OptionsError, an engine that stopped) ends it as Failed on its sink.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from .errors import EngineError, EngineStoppedError
from .events import End, Failed
from .runner import CLOSED

log = logging.getLogger("ovchat.engine")
PREPARE_THREADS = 1  # templating and encoding: milliseconds, in arrival order (a second thread grew RSS faster in the soak)
COMPILE_THREADS = 2  # XGrammar compiles (native code): a compile waits for no other


class Preparer:
    def __init__(self, prepare, known, run):
        # prepare(prompt, options) -> PreparedPrompt; known(structure) -> bool; run(prepared, sink, handle)
        self._prepare, self._known, self._run = prepare, known, run
        self._preparing = ThreadPoolExecutor(PREPARE_THREADS, thread_name_prefix="ovchat-prepare")
        self._compiling = ThreadPoolExecutor(COMPILE_THREADS, thread_name_prefix="ovchat-compile")

    def start(self, prompt, options, sink, handle) -> None:
        self._submit(self._preparing, self._start, prompt, options, sink, handle)

    def close(self) -> None:
        """Requests not yet prepared end as Failed (the engine is closing); returns at once."""
        self._preparing.shutdown(wait=False)
        self._compiling.shutdown(wait=False)

    def _start(self, prompt, options, sink, handle) -> None:
        if handle.cancelled:  # its caller left while it waited for a thread
            return sink.put(End(None))
        prepared = self._prepare(prompt, options)
        if self._known(prepared.structure):
            self._run(prepared, sink, handle)
        else:  # the engine compiles it (once, however many requests wait for it), off this lane
            self._submit(self._compiling, self._run, prepared, sink, handle)

    def _submit(self, pool: ThreadPoolExecutor, work, *args) -> None:
        sink = args[-2]
        try:
            pool.submit(_ending_on_error, work, sink, *args)
        except RuntimeError:  # the pool has shut down: the engine is closing
            sink.put(Failed(EngineStoppedError(CLOSED)))


def _ending_on_error(work, sink, *args) -> None:
    try:
        work(*args)
    except EngineError as error:  # the request's own fault, or a stopped engine: the caller's to handle
        sink.put(Failed(error))
    except Exception as error:  # a bug here costs this request, never the preparer
        log.exception("ovchat: preparing a request failed")
        sink.put(Failed(EngineError(f"Preparing the request failed ({type(error).__name__}: {error}).")))
