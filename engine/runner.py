"""What the two runners (single.py, batch.py) share: one thread that owns the pipeline, and the
lifecycle around it.

A runner takes requests from any thread (`submit`) and serves them on its own thread. It is
running until it is closed or its thread fails; from then on `submit` raises at once with the
reason (`refusing`), and the requests it held have ended: as "cancelled" on close, with an
EngineStoppedError on failure. `failure` says why a thread failed and `failed` is set once it
has; an engine process waits on it to exit and be restarted (process_child.py).
"""

from __future__ import annotations

import logging
import threading

from .errors import EngineError, EngineStoppedError, reason

log = logging.getLogger("ovchat.engine")
CLOSED = "The engine was closed; load it again to generate."
_CLOSE_WAIT_S = 10


class Runner:
    mode = ""

    def __init__(self, pipeline, thread_name: str):
        self.pipeline = pipeline
        self._lock = threading.Lock()         # a submit against close() and the thread's last drain
        self._refusing: str | None = None     # why submits are refused, once closed or failed
        self.failure: str | None = None       # why the thread failed, if it did
        self.failed = threading.Event()       # set once the thread has failed and ended every request
        self._thread = threading.Thread(target=self._guarded, name=thread_name, daemon=True)
        self._thread.start()

    def _queue(self, feed, put) -> None:
        """Queue one request (`put()`) unless the runner refuses requests now; its Accepted event
        goes first, before the runner's thread can see it."""
        with self._lock:
            if self._refusing is not None:
                raise EngineStoppedError(self._refusing)
            feed.accept()
            put()

    def wake_on_cancel(self) -> None:
        """A request was cancelled (a Handle's on_cancel): the thread may want to know at once."""

    def _refuse(self, why: str) -> bool:
        """From now on submits raise `why`; False if they already did."""
        with self._lock:
            if self._refusing is not None:
                return False
            self._refusing = why
            return True

    @property
    def closing(self) -> bool:
        return self._refusing is not None

    def close(self) -> None:
        """Stop the thread after the work in hand; open and queued requests end as cancelled."""
        self._refuse(CLOSED)
        self._wake()
        if threading.current_thread() is not self._thread:
            self._thread.join(_CLOSE_WAIT_S)

    def _guarded(self) -> None:
        try:
            self._serve()
        except Exception as error:  # a broken pipeline or a bug: everyone hears of it, nobody waits forever
            log.exception("ovchat: the engine's %s thread failed", self.mode)
            failure = (f"The engine's {self._thread.name.removeprefix('ovchat-')} failed ({type(error).__name__}: "
                       f"{reason(error)}); every request in flight was ended. Reload the engine "
                       "(`ovchat serve` restarts its engine process).")
            with self._lock:  # no submit gets into the queue after this
                self._refusing = failure
            self._end_all(EngineStoppedError(failure))
            self.failure = failure
            self.failed.set()  # last: an engine process exits when it sees it
            return
        self._end_all(None)

    # The runner's own: serve until closed, wake the thread, end every request it holds.
    def _serve(self) -> None:
        raise NotImplementedError

    def _wake(self) -> None:
        raise NotImplementedError

    def _end_all(self, error: EngineError | None) -> None:
        raise NotImplementedError


def end_alone(feed, error: BaseException) -> None:
    """End one request with `error`; a consumer's sink that fails too is only logged."""
    try:
        feed.end(error=error)
    except Exception as sink_error:
        log.warning("ovchat: could not end a stream: %s", f"{type(sink_error).__name__}: {sink_error}")


def generation_failed(error: Exception) -> EngineError:
    """OpenVINO's error during one request, one line and actionable."""
    if isinstance(error, EngineError):
        return error
    return EngineError(f"Generation failed in OpenVINO: {reason(error)}. Try a shorter prompt or fewer new tokens, "
                       "or reload the model.")
