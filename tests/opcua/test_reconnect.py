"""Server restart and network cut: the collector reconnects, re-subscribes everything, back-fills the gap, no duplicates."""

from __future__ import annotations

from collections import Counter

import pytest

from simulators.opcua.server import SimServer
from tests.opcua.conftest import by_point
from simulators.kit.aio import running, wait_until
from tests.opcua.proxy import Proxy

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(150)]

GROUP = {"name": "g", "publishing_interval": "100ms", "sampling_interval": "0", "folders": [{"root": "Plant"}]}


def _us(dt) -> int:
    return int(dt.timestamp() * 1e6)


def _dupes(readings) -> list:
    c = Counter((r.point, r.source_ts, r.status_code) for r in readings)
    return [k for k, n in c.items() if n > 1]


def _missing(sim, readings, prefix="Plant/") -> dict[str, int]:
    """Changes in the server's history, from our first value of each node on, that did not land."""
    per = by_point(readings)
    out = {}
    for n in sim.nodes:
        got = {r.source_ts for r in per.get(prefix + n.path, [])}
        if not got:
            out[n.path] = -1
            continue
        first = min(got)
        want = {_us(dv.SourceTimestamp) for dv in sim.history.values(n.nodeid)} - got
        want = {t for t in want if t > first}
        if want:
            out[n.path] = len(want)
    return out


async def test_network_cut_reconnects_and_backfills_without_loss_or_duplicates(rig):
    sim = await SimServer(nodes=54, rate=200, faults=False).start()
    proxy = await Proxy(sim.port).start()
    try:
        src = rig.source(f"opc.tcp://127.0.0.1:{proxy.port}/sim", [GROUP])
        status = rig.statuses
        async with running(src):
            await wait_until(lambda: status["plc"].data["state"] == "running", what="running")
            await wait_until(lambda: len(rig.readings()) > 200, every=0.2, what="readings before the cut")
            before = len(rig.readings())
            await proxy.cut()
            await wait_until(lambda: status["plc"].data["state"] != "running", timeout=10, what="cut noticed")
            cut_detail = status["plc"].data["detail"]
            produced_during_cut = sim.produced_total
            start = produced_during_cut
            await wait_until(lambda: sim.produced_total - start > 450, every=0.1, what="changes during the cut")
            produced_during_cut = sim.produced_total - produced_during_cut
            await proxy.start()
            await wait_until(lambda: status["plc"].data["state"] == "running" and src.stats["sessions"] == 2,
                             timeout=20, what="reconnected")
            n = len(rig.readings())
            await wait_until(lambda: len(rig.readings()) > n + 100, every=0.2, what="live data after the reconnect")
            sim.pause()
            await wait_until(lambda: not _missing(sim, rig.readings()), timeout=15, what="every change landed")
        readings = rig.readings()
        assert before > 0 and produced_during_cut > 300
        assert cut_detail  # the state says why it is not running
        assert not _dupes(readings), "duplicates after reconnect"
        assert src.stats["backfilled"] >= produced_during_cut * 0.9  # the gap came from HistoryRead
        assert src.stats["subscribed"] == len(sim.nodes) and src.stats["failed"] == 0
        assert status["plc"].data["errors_total"] >= 1
    finally:
        await proxy.cut()
        await sim.stop()


async def test_server_restart_resubscribes_every_node(rig):
    sim = await SimServer(nodes=54, rate=100, faults=False).start()
    port = sim.port
    try:
        src = rig.source(sim.endpoint, [GROUP])
        async with running(src):
            await wait_until(lambda: rig.statuses["plc"].data["state"] == "running", what="running")
            await wait_until(lambda: len(rig.readings()) > 100, every=0.2, what="readings before the restart")
            await sim.stop()
            await wait_until(lambda: rig.statuses["plc"].data["state"] != "running", timeout=10, what="loss noticed")
            n_before = len(rig.readings())
            sim = await SimServer(port=port, nodes=54, rate=100, faults=False, seed=2).start()
            await wait_until(lambda: src.stats["sessions"] >= 2 and rig.statuses["plc"].data["state"] == "running",
                             timeout=20, what="reconnected")
            restarted_at = _us(sim.history.values(sim.nodes[0].nodeid)[0].SourceTimestamp)
            n = len(rig.readings())
            await wait_until(lambda: len(rig.readings()) > n + 150, every=0.2, what="live data after the restart")
            sim.pause()
            # Every node delivers again (no subscription silently lost), and every change of the new server lands.
            await wait_until(lambda: not _missing(sim, [r for r in rig.readings() if r.source_ts >= restarted_at]),
                             timeout=15, what="every node after restart")
        readings = rig.readings()
        assert len(readings) > n_before
        assert not _dupes(readings)
        after = by_point([r for r in readings if r.source_ts >= restarted_at])
        assert len(after) == len(sim.nodes)
    finally:
        await sim.stop()
