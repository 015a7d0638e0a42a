"""One reconnect policy for every source: jittered capped backoff, reset only after a healthy connection.

The Supervisor loop (MQTT, OPC-UA, a crashed collector restarted by the runner) and the Modbus
connection (which keeps polling while it is down, so it cannot live inside the loop) hold the
same ``ReconnectPolicy`` object; every source spells its settings ``reconnect_initial`` /
``reconnect_max``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import time

import pytest

import edge.backoff
from edge.config import SOURCE_TYPES
from edge.sources.modbus.connection import Connection, ReadFailed
from edge.sources.modbus.plan import Block
from edge.sources.status import SourceStatus
from edge.sources.supervisor import ReconnectPolicy, Supervisor, tcp_probe
from simulators.kit.aio import wait_until
from tests.modbus.conftest import source_config


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _ceiling_draws(monkeypatch):
    # The outermost edge: the random draw. Every delay is its ceiling, so the attempt count is visible.
    monkeypatch.setattr(edge.backoff, "full_jitter",
                        lambda attempt, initial, cap, rand: edge.backoff.ceiling(attempt, initial, cap))


def test_short_connections_keep_backing_off_and_a_healthy_one_resets(monkeypatch):
    _ceiling_draws(monkeypatch)
    clock = Clock()
    policy = ReconnectPolicy(1.0, 60.0, healthy_after=30.0, clock=clock)
    assert [policy.failed() for _ in range(3)] == [1.0, 2.0, 4.0]  # refused three times
    policy.connected()
    clock.now += 5  # up 5 s, then dropped: not healthy, the backoff goes on growing
    assert policy.failed() == 8.0
    policy.connected()
    clock.now += 30  # up 30 s: healthy, a new problem starts from the first delay
    assert policy.failed() == 1.0
    assert policy.failed() == 2.0


def test_a_failure_with_its_own_wait_still_resets_after_a_healthy_run():
    clock = Clock()
    policy = ReconnectPolicy(1.0, 60.0, healthy_after=30.0, clock=clock)
    policy.failed(), policy.failed()
    policy.connected()
    clock.now += 31
    assert policy.down() is True and policy.backoff.attempt == 0
    assert policy.down() is False  # not up: nothing to judge


def test_the_supervisor_and_the_modbus_connection_hold_the_same_policy():
    sup = Supervisor(object(), SourceStatus("s", "t", None), initial=1, cap=2, healthy_after=7)
    assert isinstance(sup.policy, ReconnectPolicy) and sup.policy.healthy_after == 7
    cfg = source_config([{"device_id": 1, "points": [{"name": "a", "address": "40001"}]}], 1)

    async def policy_of_a_connection() -> ReconnectPolicy:
        conn = Connection(cfg, 0)  # pymodbus wants a running loop
        conn.close()
        return conn.policy

    policy = asyncio.run(policy_of_a_connection())
    assert isinstance(policy, ReconnectPolicy)
    assert (policy.backoff.initial, policy.backoff.cap) == (float(cfg.reconnect_initial), float(cfg.reconnect_max))


def test_every_source_spells_its_reconnect_settings_one_way():
    for proto, module in sorted(SOURCE_TYPES.items()):
        cfg = importlib.import_module(f"{module}.config").Config
        names = {f.name for f in dataclasses.fields(cfg)}
        spelled = {n for n in names if n.startswith(("reconnect", "backoff"))}
        assert spelled in (set(), {"reconnect_initial", "reconnect_max"}), (proto, spelled)


def test_a_connection_reopened_at_once_is_judged_before_the_next(monkeypatch):
    _ceiling_draws(monkeypatch)
    clock = Clock()
    policy = ReconnectPolicy(1.0, 60.0, healthy_after=30.0, clock=clock)
    policy.failed(), policy.failed(), policy.failed()
    policy.connected()
    clock.now += 3600  # up an hour, closed by the device, reopened at once (Modbus does)
    policy.connected()
    clock.now += 1
    assert policy.failed() == 1.0  # the hour-long connection counted: a new problem


@pytest.mark.timeout(60)
def test_a_modbus_device_that_accepts_for_a_moment_between_refusals_keeps_backing_off(monkeypatch):
    """Refused, then accepted for a moment, then refused: before the shared policy the moment's
    successful connect reset the backoff, so a flapping device was retried at the first delay."""
    _ceiling_draws(monkeypatch)

    async def main() -> float:
        held = []

        async def hold(reader, writer):
            held.append(writer)

        probe_server = await asyncio.start_server(hold, "127.0.0.1", 0)
        port = probe_server.sockets[0].getsockname()[1]
        probe_server.close()
        await probe_server.wait_closed()  # nothing listens: refused
        cfg = source_config([{"device_id": 1, "points": [{"name": "a", "address": "40001"}]}], port,
                            reconnect_initial="0.5s", reconnect_max="30s")
        conn = Connection(cfg, 0, SourceStatus("plc", "modbus", None))  # no probe: only the policy decides

        async def attempt() -> bool:
            try:
                await conn.ensure()
                return True
            except ReadFailed:
                return False

        try:
            assert not await attempt()  # refused: the first delay (0.5 s)
            server = await asyncio.start_server(hold, "127.0.0.1", port)
            up = False

            async def connects() -> bool:
                nonlocal up
                up = up or await attempt()
                return up

            deadline = time.monotonic() + 10
            while not await connects():  # the next read after the 0.5 s delay connects
                assert time.monotonic() < deadline, "never connected"
                await asyncio.sleep(0.05)
            server.close()
            for w in held:
                w.close()
            await server.wait_closed()
            await wait_until(lambda: not conn.client.connected, 10, what="the device's close")
            refused_at = time.monotonic()
            assert not await attempt()  # reopened at once, refused
            return conn.next_try - refused_at
        finally:
            conn.close()

    delay = asyncio.run(main())
    assert delay > 0.8, f"the backoff started over ({delay:.2f} s) after a connection that lasted a moment"
