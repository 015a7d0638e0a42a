"""The one reconnect loop: classification, backoff with its reset after a healthy run, the failure's own wait."""

from __future__ import annotations

import asyncio
import random
import ssl

import pytest

from edge.backoff import Backoff
from edge.sources.states import State
from edge.sources.status import SourceStatus
from edge.sources.supervisor import Failure, Supervisor, classify, probe_times, tcp_probe
from simulators.kit.aio import running, wait_until


class Script:
    """A session whose connect() follows a script of outcomes; serve() ends after ``up_for`` seconds."""

    def __init__(self, outcomes, up_for=0.0):
        self.outcomes = list(outcomes)
        self.up_for = up_for
        self.connects = self.closes = 0
        self.states_at_connect: list[str] = []
        self.connect_times: list[float] = []  # the event loop's clock at each attempt

    async def connect(self):
        self.connects += 1
        self.connect_times.append(asyncio.get_running_loop().time())
        out = self.outcomes.pop(0) if self.outcomes else None
        if isinstance(out, BaseException):
            raise out

    async def serve(self):
        await asyncio.sleep(self.up_for)

    async def close(self):
        self.closes += 1


def test_generic_classification():
    assert classify(ConnectionRefusedError(111, "Connection refused"), "connect", "h:1").state is State.CONNECT_FAILED
    assert "Connection refused" in classify(ConnectionRefusedError(111, "Connection refused"), "connect", "h:1").detail
    assert classify(ssl.SSLCertVerificationError("bad cert"), "connect", "h:1").state is State.TLS_ERROR
    assert classify(TimeoutError(), "connect", "h:1").state is State.CONNECT_FAILED
    assert classify(ValueError("boom"), "serve", "h:1").state is State.DISCONNECTED
    assert classify(ValueError("boom"), "run", "h:1").state is State.RESTARTING
    f = Failure(State.AUTH_FAILED, "no", wait=60)
    assert classify(f, "connect", "h:1") is f


@pytest.mark.anyio
async def test_failures_are_reported_retried_and_counted_and_a_reconnect_is_counted():
    status = SourceStatus("s", "test", None)
    session = Script([ConnectionRefusedError(111, "Connection refused"), None, None], up_for=0.01)
    sup = Supervisor(session, status, initial=0.01, cap=0.02, target="h:1")
    task = asyncio.create_task(sup.run())
    try:
        await wait_until(lambda: session.connects >= 3, timeout=10, what="three attempts")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    snap = status.snapshot()
    assert snap["errors_total"] == 1 and "Connection refused" in snap["last_error"]  # a plain end is no error
    assert snap["reconnects_total"] >= 1
    assert session.closes >= 2


@pytest.mark.anyio
async def test_a_failure_with_its_own_wait_is_not_retried_by_the_backoff():
    status = SourceStatus("s", "test", None)
    session = Script([Failure(State.AUTH_FAILED, "refused user 'edge'", wait=30)] * 5)
    async with running(Supervisor(session, status, initial=0.01, cap=0.01, target="h:1")):
        await wait_until(lambda: status.snapshot()["state"] == "auth_failed", timeout=5, what="auth_failed")
        await asyncio.sleep(0.1)  # ten times the backoff: a backoff retry would have come by now
        assert session.connects == 1


@pytest.mark.anyio
async def test_the_backoff_resets_only_after_a_healthy_run():
    status = SourceStatus("s", "test", None)
    backoff = Backoff(initial=0.001, cap=0.002, rng=random.Random(1))
    session = Script([OSError("down")] * 3 + [None], up_for=0.05)
    sup = Supervisor(session, status, initial=0, cap=0, target="h:1", healthy_after=0.04, backoff=backoff)
    async with running(sup):
        await wait_until(lambda: session.connects >= 4 and backoff.attempt <= 1, timeout=10, what="reset")
        assert status.snapshot()["errors_total"] == 3


@pytest.mark.anyio
async def test_a_crashing_collector_is_restarted_and_check_can_end_the_loop():
    status = SourceStatus("s", "test", None)

    class Crash(Script):
        async def serve(self):
            raise KeyError("bug")

    session = Crash([])
    checks = []

    def check():
        checks.append(status.snapshot()["state"])
        if len(checks) == 2:
            raise RuntimeError("give up")

    with pytest.raises(RuntimeError, match="give up"):
        await Supervisor(session, status, initial=0.001, cap=0.001, phase="run", check=check).run()
    assert checks == ["restarting", "restarting"] and "KeyError" in status.snapshot()["last_error"]


def test_probe_times_are_bounded_by_the_delay():
    assert probe_times(30, 1.0)[:3] == [1.0, 2.0, 3.0] and max(probe_times(30, 1.0)) < 30
    assert probe_times(2, 1.0) == [0.5, 1.0, 1.5]  # at most a quarter of the delay apart
    assert probe_times(0.1, 1.0) == [0.05]
    assert probe_times(0.0, 1.0) == []


class TcpSession(Script):
    """connect() opens a real TCP connection to ``port``: refused while nothing listens."""

    def __init__(self, port, up_for=60.0):
        super().__init__([], up_for=up_for)
        self.port = port
        self.connected_at = None

    async def connect(self):
        self.connects += 1
        _, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.close()
        self.connected_at = asyncio.get_running_loop().time()


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _noop(reader, writer):
    writer.close()


class Counted:
    """A probe that keeps each of its answers (None where it raised)."""

    def __init__(self, probe):
        self.probe = probe
        self.answers: list[bool | None] = []

    async def __call__(self) -> bool:
        try:
            ok = await self.probe()
        except Exception:
            self.answers.append(None)
            raise
        self.answers.append(ok)
        return ok


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_a_long_backoff_ends_as_soon_as_the_endpoint_answers_again():
    port = _free_port()
    status = SourceStatus("s", "test", None)
    session = TcpSession(port)
    # Every backoff delay is the full 30 s (rand 1.0): without the probe the next attempt is 30 s away.
    backoff = Backoff(initial=30, cap=30, rng=type("R", (), {"random": staticmethod(lambda: 1.0)})())
    probe = Counted(tcp_probe("127.0.0.1", port, timeout=0.5))
    sup = Supervisor(session, status, initial=30, cap=30, target=f"127.0.0.1:{port}", backoff=backoff,
                     probe=probe, probe_every=0.5)
    async with running(sup):
        await wait_until(lambda: session.connects >= 1 and status.snapshot()["state"] == "connect_failed",
                         timeout=10, what="first attempt refused")
        # The server stays down into the 30 s backoff: refused at its start and at the first periodic probe.
        await wait_until(lambda: probe.answers.count(False) >= 2, timeout=10, what="two refused probes")
        server = await asyncio.start_server(_noop, "127.0.0.1", port)
        answered_at = asyncio.get_running_loop().time()
        try:
            await wait_until(lambda: session.connected_at is not None, timeout=10, what="reconnected")
        finally:
            server.close()
    assert session.connected_at - answered_at < 2.0
    assert sup.woken_early == 1 and session.connects == 2


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_an_endpoint_that_answers_but_refuses_the_session_waits_the_whole_backoff():
    port = _free_port()
    server = await asyncio.start_server(_noop, "127.0.0.1", port)
    status = SourceStatus("s", "test", None)
    session = Script([Failure(State.TLS_ERROR, "certificate refused")] * 10)
    backoff = Backoff(initial=3, cap=3, rng=type("R", (), {"random": staticmethod(lambda: 1.0)})())
    probe = Counted(tcp_probe("127.0.0.1", port, timeout=0.5))
    sup = Supervisor(session, status, initial=3, cap=3, target=f"127.0.0.1:{port}", backoff=backoff,
                     probe=probe, probe_every=0.1)
    try:
        async with running(sup):
            await wait_until(lambda: session.connects >= 2, timeout=10, what="the retry")
    finally:
        server.close()
    # Probed once, at the start of the wait: it answered, so the whole 3 s (thirty probe intervals) was waited.
    assert session.connect_times[1] - session.connect_times[0] >= 3.0 - 0.01
    assert sup.woken_early == 0 and probe.answers[:1] == [True] and len(probe.answers) <= 2


@pytest.mark.anyio
async def test_a_broken_probe_neither_ends_the_loop_nor_cuts_the_wait():
    status = SourceStatus("s", "test", None)
    session = Script([OSError("down")] * 10)

    async def broken():
        raise RuntimeError("probe bug")

    probe = Counted(broken)
    backoff = Backoff(initial=1, cap=1, rng=type("R", (), {"random": staticmethod(lambda: 1.0)})())
    sup = Supervisor(session, status, initial=1, cap=1, target="h:1", backoff=backoff, probe=probe, probe_every=0.05)
    async with running(sup) as task:
        await wait_until(lambda: session.connects >= 2, timeout=5, what="the retry after the full delay")
        assert not task.done()
    # The probe raised (None) at the start of the wait: the whole 1 s delay was waited, not cut short.
    assert probe.answers[:1] == [None] and session.connect_times[1] - session.connect_times[0] >= 1.0 - 0.01
    assert sup.woken_early == 0
