"""A server back after an outage is reconnected within about a second, not after the backoff.

The backoff is 30 s (no jitter, so the old behaviour is certain: the next attempt 30 s after the
loss); the supervisor probes the endpoint's TCP port while it waits and reconnects as soon as
it answers."""

from __future__ import annotations

import time

import pytest

import edge.backoff
from simulators.kit.aio import running, wait_until
from simulators.opcua.server import SimServer

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

NODES = {"name": "g", "publishing_interval": "100ms", "sampling_interval": "0",
         "nodes": ["ns=2;s=line1.press1.temperature", "ns=2;s=line1.press1.pressure"]}


@pytest.fixture
def no_jitter(monkeypatch):
    # Every delay is its ceiling: 30 s from the first failure on (the outermost edge: the random draw).
    monkeypatch.setattr(edge.backoff, "full_jitter", lambda attempt, initial, cap, rand: edge.backoff.ceiling(attempt, initial, cap))


async def test_reconnects_within_two_seconds_of_the_server_answering_despite_a_30s_backoff(rig, no_jitter):
    sim = await SimServer(nodes=10, rate=20, faults=False, extras=False).start()
    port = sim.port
    try:
        src = rig.source(sim.endpoint, [NODES], reconnect_initial="30s", reconnect_max="30s")
        status = rig.statuses["plc"]
        async with running(src):
            await wait_until(lambda: status.data["state"] == "running", timeout=30, what="running")
            await sim.stop()
            await wait_until(lambda: status.data["state"] != "running", timeout=15, what="loss noticed")
            down_at = time.monotonic()
            # Down for a while: the supervisor is inside its 30 s wait, probing a closed port.
            await wait_until(lambda: time.monotonic() - down_at > 3, every=0.1, what="outage")
            sim = await SimServer(port=port, nodes=10, rate=20, faults=False, extras=False).start()
            answered = time.monotonic()
            await wait_until(lambda: src.stats["sessions"] == 2 and status.data["state"] == "running",
                             timeout=15, every=0.05, what="reconnected")
            took = time.monotonic() - answered
            n = len(rig.readings())
            await wait_until(lambda: len(rig.readings()) > n, timeout=10, what="data after the reconnect")
        print(f"reconnected {took:.2f} s after the server answered (backoff 30 s)")
        assert took < 2.5, f"reconnected only {took:.1f} s after the server answered"
    finally:
        await sim.stop()


async def test_a_server_that_answers_but_refuses_the_session_is_not_hammered(rig, tmp_path, no_jitter):
    # Up and listening, but without the security we ask for: each attempt is refused after TCP connects.
    sim = await SimServer(nodes=5, rate=10, security="sign", cert_dir=tmp_path / "server-pki",
                          faults=False, extras=False).start()
    try:
        src = rig.source(sim.endpoint, [NODES], reconnect_initial="4s", reconnect_max="4s",
                         security={"mode": "SignAndEncrypt"})
        status = rig.statuses["plc"]
        async with running(src):
            await wait_until(lambda: status.data["errors_total"] >= 1, timeout=30, what="first refusal")
            first = time.monotonic()
            await wait_until(lambda: status.data["errors_total"] >= 2, timeout=30, what="second refusal")
            gap = time.monotonic() - first
        assert status.data["state"] == "tls_error"
        assert gap >= 3.5, f"retried {gap:.1f} s after a refusal although the backoff is 4 s"
    finally:
        await sim.stop()
