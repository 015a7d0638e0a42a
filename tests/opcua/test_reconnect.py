"""Server restart and network cut: the collector reconnects, re-subscribes everything, back-fills the gap, no duplicates; values sharing one source time survive a cut and an edge restart."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from asyncua import ua

from simulators.opcua.server import SimServer
from tests.opcua.conftest import by_point
from simulators.kit.aio import running, wait_until
from tests.opcua.proxy import Proxy

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(150)]

GROUP = {"name": "g", "publishing_interval": "100ms", "sampling_interval": "0", "folders": [{"root": "Plant"}]}


def _us(dt) -> int:
    return int(dt.timestamp() * 1e6)


def _value(r) -> tuple:
    return tuple(getattr(r, f) if r.HasField(f) else None
                 for f in ("value_double", "value_int", "value_bool", "value_string", "value_json"))


def _dupes(readings) -> list:
    """The same value twice: point, source time, status *and* value (a server with coarse
    timestamps may send two distinct values with one source time: not a duplicate)."""
    c = Counter((r.point, r.source_ts, r.status_code, _value(r)) for r in readings)
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


async def _coarse_pair(rig, sim, proxy, restart: bool):
    """1.5 taken live; the cut (or the edge down); then 2.5 with the very same source time and 3.5 after it."""
    node = next(n for n in sim.nodes if n.vtype == ua.VariantType.Double)
    point = "Plant/" + node.path
    endpoint = f"opc.tcp://127.0.0.1:{proxy.port}/sim"
    src = rig.source(endpoint, [GROUP], backfill={"checkpoint_interval": "200ms"})
    status = rig.statuses["plc"]

    def values() -> list:
        return [r.value_double for r in rig.readings() if r.point == point and r.kind == "reading"]
    t = datetime.now(timezone.utc)
    async with running(src):
        await wait_until(lambda: status.data["state"] == "running", what="running")
        await sim.set_value(node.path, 1.5, ts=t)
        await wait_until(lambda: 1.5 in values(), what="the first value live")
        if not restart:
            await proxy.cut()
            await wait_until(lambda: status.data["state"] != "running", timeout=10, what="cut noticed")
            await sim.set_value(node.path, 2.5, ts=t)
            await sim.set_value(node.path, 3.5, ts=t + timedelta(milliseconds=1))
            await proxy.start()
            await wait_until(lambda: src.stats["sessions"] == 2 and status.data["state"] == "running", timeout=20,
                             what="reconnected")
            await wait_until(lambda: 3.5 in values(), what="the value after the cut")
    if restart:  # the edge was down: a new process, only the checkpoint remembers
        await sim.set_value(node.path, 2.5, ts=t)
        await sim.set_value(node.path, 3.5, ts=t + timedelta(milliseconds=1))
        src = rig.source(endpoint, [GROUP])
        async with running(src):
            await wait_until(lambda: 3.5 in values(), what="the value after the restart")
    return src, values()


@pytest.mark.parametrize("restart", [False, True], ids=["cut", "edge_restart"])
async def test_two_values_with_one_source_time_across_a_cut_both_land(rig, restart):
    # A server with coarse timestamps. Only history has 2.5; a back-fill that took "at or before
    # the newest time we hold" for "already have" skipped it.
    sim = await SimServer(nodes=6, rate=0, faults=False, extras=False).start()
    proxy = await Proxy(sim.port).start()
    try:
        src, values = await _coarse_pair(rig, sim, proxy, restart)
        assert values[-3:] == [1.5, 2.5, 3.5]
        assert not _dupes(rig.readings())
        assert src.stats["gaps_open"] == 0  # history had it all
    finally:
        await proxy.cut()
        await sim.stop()
