"""A Modbus device back after an outage is reconnected within about a second, not after the backoff.

The reconnect backoff is 30 s without jitter (the old behaviour is certain: no connect attempt
until 30 s after the first failed one); the connection probes the device's TCP port while it
waits and connects as soon as it answers."""

from __future__ import annotations

import asyncio
import time

import pytest

import edge.backoff
from edge.sources.modbus.collector import Source
from simulators.kit.aio import running, wait_until
from tests.modbus.conftest import Rig, source_config, start_sim

pytestmark = pytest.mark.timeout(120)

DEVICES = [{"device_id": 1, "name": "plc-a", "points": [{"name": "a/t", "address": "40001"}]}]


def test_reconnects_within_two_seconds_of_the_device_answering_despite_a_30s_backoff(tmp_path, monkeypatch):
    # Every delay is its ceiling (the outermost edge: the random draw).
    monkeypatch.setattr(edge.backoff, "full_jitter",
                        lambda attempt, initial, cap, rand: edge.backoff.ceiling(attempt, initial, cap))

    async def main() -> float:
        rig = Rig(tmp_path)
        sim = await start_sim(DEVICES)
        cfg = source_config(DEVICES, sim.port, poll_interval=0.05, offline_retry=0.1,
                            reconnect_initial="30s", reconnect_max="30s")
        src = Source(cfg, rig.context("plc"))
        status = src.ctx.status
        try:
            async with running(src):
                await wait_until(lambda: status.snapshot()["state"] == "running", what="running")
                await sim.stop()
                # A connect attempt failed: the connection is inside its 30 s backoff.
                await wait_until(lambda: "cannot connect to 127.0.0.1" in (status.snapshot()["detail"] or ""),
                                 what="the failed connect")
                down_at = time.monotonic()
                await wait_until(lambda: time.monotonic() - down_at > 3, every=0.1, what="the outage")
                await sim.start()
                answered = time.monotonic()
                await wait_until(lambda: status.snapshot()["state"] == "running", timeout=20, every=0.05,
                                 what="reconnected")
                return time.monotonic() - answered
        finally:
            await sim.stop()
            rig.close()

    took = asyncio.run(main())
    print(f"reconnected {took:.2f} s after the device answered (backoff 30 s)")
    assert took < 2.5, f"reconnected only {took:.1f} s after the device answered"
