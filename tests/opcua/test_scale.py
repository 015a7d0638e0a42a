"""10,000 monitored items: subscribed in batches over several subscriptions, every change lands once."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from simulators.opcua.server import SimServer
from simulators.kit.aio import running, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(200)]


async def test_ten_thousand_monitored_items(rig):
    sim = await SimServer(nodes=10_000, rate=4000, faults=False, extras=False, plant_limit=0).start()
    try:
        src = rig.source(sim.endpoint, [{"name": "all", "publishing_interval": "250ms", "sampling_interval": "0",
                                         "folders": [{"root": "Plant"}]}],
                         subscribe_batch=1000, max_items_per_subscription=4000, timeout=30,
                         watchdog_interval=5)  # server and client share this loop: give the probe room
        t0 = time.monotonic()
        async with running(src):
            await wait_until(lambda: rig.statuses["plc"].data["state"] == "running", timeout=120, what="running")
            subscribed_in = time.monotonic() - t0
            start = sim.produced_total
            await wait_until(lambda: sim.produced_total - start > 4000, timeout=30, every=0.1,
                             what="a second of changes at the offered rate")
            sim.pause()
            want = sim.produced_total

            await wait_until(lambda: _missing(sim, rig.readings()) == 0, timeout=60, every=1.0,
                             what="every change reconciled with the server's history")
        readings = rig.readings()
        assert src.stats["subscribed"] == 10_000 and src.stats["failed"] == 0
        points = {r.point for r in readings}
        assert len(points) == 10_000  # no subscription silently lost
        assert not [k for k, c in Counter((r.point, r.source_ts) for r in readings).items() if c > 1]
        assert _missing(sim, readings) == 0
        print(f"10k items subscribed in {subscribed_in:.1f}s; {len(readings)} readings; produced {want}")
    finally:
        await sim.stop()


def _missing(sim, readings) -> int:
    """Changes the server made after our first value of a node that are not in the spool."""
    per: dict[str, set] = {}
    for r in readings:
        per.setdefault(r.point, set()).add(r.source_ts)
    missing = 0
    for n in sim.nodes:
        got = per.get("Plant/" + n.path)
        if not got:
            missing += 1
            continue
        first = min(got)
        want = {int(dv.SourceTimestamp.timestamp() * 1e6) for dv in sim.history.values(n.nodeid)}
        missing += len({t for t in want if t > first} - got)
    return missing
