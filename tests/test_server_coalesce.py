"""server/coalesce.py on fake ASGI apps (no model, no Ray): an event stream's bytes arrive the same,
in fewer body messages; the first two go at once; nothing waits longer than the interval.

The loop runs on a virtual clock: a wait takes no real time and advances the clock by exactly
what was asked, so every bound below is exact, whatever else the machine is doing."""

import asyncio
import selectors

from ovchat.server.coalesce import CoalesceEventStream

INTERVAL_S = 0.05


def sse_app(gaps_s: list[float], content_type: bytes = b"text/event-stream"):
    """Sends a start, then one event after each gap, then the final empty body (as Starlette does)."""
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", content_type)]})
        for i, gap in enumerate(gaps_s):
            await asyncio.sleep(gap)
            await send({"type": "http.response.body", "body": f"data: {i}\n\n".encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    return app


class _Skipping(selectors.SelectSelector):
    """The loop's selector: nothing here waits on I/O, so a wait for the next timer is skipped
    and the loop's clock moves on to it."""

    def __init__(self, loop: "VirtualClockLoop"):
        super().__init__()
        self._loop = loop

    def select(self, timeout=None):
        if timeout:
            self._loop.now += timeout
        return super().select(0)


class VirtualClockLoop(asyncio.SelectorEventLoop):
    def __init__(self):
        self.now = 0.0
        super().__init__(_Skipping(self))

    def time(self) -> float:
        return self.now


def run_virtual(main):
    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


def run(app) -> list[tuple[float, dict]]:
    """(seconds since the start, message) of every message the middleware sent."""
    async def main():
        sent, loop = [], asyncio.get_running_loop()
        start = loop.time()

        async def send(message):
            sent.append((loop.time() - start, message))

        await CoalesceEventStream(app, INTERVAL_S)({"type": "http"}, None, send)
        await asyncio.sleep(2 * INTERVAL_S)  # a stray timer would send after the end: it must not
        return sent
    return run_virtual(main)


def bodies(sent) -> list[bytes]:
    return [message["body"] for _, message in sent if message["type"] == "http.response.body"]


def test_events_every_10_ms_go_out_joined_at_most_once_per_interval_and_none_waits_longer():
    sent = run(sse_app([0.01] * 30))
    assert b"".join(bodies(sent)) == b"".join(f"data: {i}\n\n".encode() for i in range(30))
    assert sent[-1][1]["more_body"] is False and all(m.get("more_body") for _, m in sent[1:-1])
    assert bodies(sent)[:2] == [b"data: 0\n\n", b"data: 1\n\n"]            # the first two at once
    assert len(bodies(sent)) < 15                                           # fewer messages than events
    times = [t for t, m in sent if m["type"] == "http.response.body"][2:-1]
    assert all(b - a >= INTERVAL_S - 1e-9 for a, b in zip(times, times[1:])), times  # at most one per interval
    produced = {i: 0.01 * (i + 1) for i in range(30)}                      # when the app sent event i
    for t, message in sent:
        for line in message.get("body", b"").split(b"\n\n"):
            if line:
                waited = t - produced[int(line.removeprefix(b"data: "))]
                assert waited <= INTERVAL_S + 1e-9, (line, waited)         # bounded delay


def test_an_event_held_before_a_long_pause_goes_out_when_its_interval_ends():
    sent = run(sse_app([0, 0, 0.005, 0.5]))  # event 2 comes just after 1, then nothing for 0.5 s
    held = next(t for t, m in sent if m.get("body") == b"data: 2\n\n")
    assert held <= INTERVAL_S + 1e-9 and bodies(sent)[-2:] == [b"data: 3\n\n", b""]


def test_other_responses_pass_untouched():
    sent = run(sse_app([0.001] * 5, content_type=b"application/json"))
    assert bodies(sent) == [f"data: {i}\n\n".encode() for i in range(5)] + [b""]


def test_a_stream_cancelled_with_events_held_sends_nothing_after_its_end():
    async def main():
        sent, loop = [], asyncio.get_running_loop()

        async def send(message):
            sent.append(message)

        task = asyncio.ensure_future(CoalesceEventStream(sse_app([0.001] * 100), INTERVAL_S)({"type": "http"}, None, send))
        await asyncio.sleep(0.03)   # the first two sent, the next held for their interval
        task.cancel()               # the client left
        await asyncio.gather(task, return_exceptions=True)
        count = len(sent)
        await asyncio.sleep(2 * INTERVAL_S)
        return sent, count
    sent, count = run_virtual(main)
    assert len(sent) == count and 3 <= count < 10   # start + the first two (+ the held ones flushed at the end)
