"""A server that answers HistoryRead with Good and no values (it keeps no history and does not say
so): the hole it leaves is an open gap, reported in the table (a gap row through the real
forwarder into the emulator), on the admin page's model and in /metrics. Nodes that did not
change while we were away are not gaps. The same holds for what history held beyond
``max_values_per_node`` and for every reconnect with the back-fill turned off."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable

import pytest
from asyncua import ua

from edge.admin import create_app, metrics, model, reading
from edge.encode import decode, encode_gap_marker
from edge.forward import Forwarder
from edge.sources.opcua.history import Checkpoint, Gap, GapWatch
from simulators.kit.aio import running, wait_until
from simulators.opcua import server as simserver
from simulators.opcua.server import SimServer
from tests.admin.conftest import ENV, login, make_config
from tests.forwarder.conftest import make_cfg
from tests.opcua.proxy import Proxy
from tests.support.fixtures import emulator  # noqa: F401

pytestmark = [pytest.mark.timeout(150)]

GROUP = {"name": "g", "publishing_interval": "100ms", "sampling_interval": "0",
         "folders": [{"root": "Plant", "exclude": ["*/info/*"]}]}
NODES = 27


def _history_good_but_empty(server) -> None:
    """The third-party server of the field test: every HistoryRead is Good, with zero values."""
    hm = server.iserver.history_manager

    async def read_history(params: ua.HistoryReadParameters) -> list[ua.HistoryReadResult]:
        return [ua.HistoryReadResult(StatusCode=ua.StatusCode(ua.StatusCodes.Good), HistoryData=ua.HistoryData())
                for _ in params.NodesToRead]

    hm.read_history = read_history


@pytest.fixture
def silent_history(monkeypatch):
    """SimServer(history_enabled=False) answers like that server, hooked in before it listens (a
    collector reconnecting the moment the port opens must not meet the real history first)."""
    monkeypatch.setattr(simserver, "_disable_history", _history_good_but_empty)


def _now_us() -> int:
    return time.time_ns() // 1000


def _us(dv: ua.DataValue) -> int:
    return (dv.SourceTimestamp - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)


async def _away(rig, sim: SimServer, proxy: Proxy, src, while_away: Callable[[], Awaitable[Any]]) -> dict[str, int]:
    """Run the source until every node's newest value is taken (the simulator paused), cut the link, await
    ``while_away()``, heal it, and return once every node the reconnect watched had its first value
    and a gap row is spooled. Returns each node's newest source time (us) from before the cut, by path."""
    status = rig.statuses["plc"]
    async with running(src):
        await wait_until(lambda: status.data["state"] == "running", what="running")
        await wait_until(lambda: len({r.point for r in rig.readings()}) >= NODES, every=0.2, what="every node once")
        sim.pause()  # (a write already under way still lands: the newest values are read each time)

        def newest() -> dict[str, int]:
            return {n.path: _us(sim.history.values(n.nodeid)[-1]) for n in sim.nodes if "/info/" not in n.path}

        def caught_up() -> bool:
            got = {}
            for r in rig.readings():
                got[r.point] = max(got.get(r.point, 0), r.source_ts)
            return all(got.get("Plant/" + p) == ts for p, ts in newest().items())
        await wait_until(caught_up, every=0.2, what="every node's newest value taken")
        before = newest()
        await proxy.cut()
        await wait_until(lambda: status.data["state"] != "running", timeout=10, what="cut noticed")
        await while_away()
        await proxy.start()
        await wait_until(lambda: src.stats["sessions"] == 2 and status.data["state"] == "running", timeout=20,
                         what="reconnected")
        await wait_until(lambda: not src._gaps.pending, timeout=10, what="every node's first value after the cut")
        await wait_until(lambda: any(r.kind == "gap" for r in rig.readings()), every=0.1, what="the gap row spooled")
    return before


def _the_only_gap(rig, src, point: str, start_us: int, end_us: int, reason: str) -> None:
    """One gap in the status and one gap row in the spool: ``point`` from ``start_us`` to ``end_us``."""
    gaps = rig.statuses["plc"].data["gaps"]
    assert src.stats["gaps_open"] == 1 and len(gaps) == 1, gaps
    gap = gaps[0]
    assert (gap["point"], gap["reason"]) == (point, reason)
    assert round(gap["start_ts"] * 1e6) == start_us and round(gap["end_ts"] * 1e6) == end_us
    markers = [r for r in rig.readings() if r.kind == "gap"]
    assert [(m.point, m.source_ts, m.loss_reason) for m in markers] == [(point, start_us, reason)]
    assert json.loads(markers[0].value_json)["to_us"] == end_us


def _page(rig) -> dict:
    snap = reading.read(rig.path)
    assert snap.error is None, snap.error
    return model.status(appliance_id="test-edge", stats=snap.stats, states_by_kind=snap.states, samples=[],
                        version="test", started=time.time()), snap.stats


def _gap_rows(emu) -> list[dict]:
    rows, after = [], 0
    while True:
        page = emu.rows(appliance_id="test-edge", from_seq=after + 1, limit=5000)
        if not page:
            return rows
        rows += [r for r in page if r.get("kind") == "gap"]
        after = max(int(r["seq"]) for r in page)


def _ends(row: dict) -> dict:
    v = row["value_json"]
    return json.loads(v) if isinstance(v, str) else v


def _ts_us(v) -> int:
    """The emulator shows a TIMESTAMP column as microseconds or as an ISO string."""
    if isinstance(v, (int, float)):
        return int(v)
    from datetime import datetime
    return int(datetime.fromisoformat(str(v).replace("Z", "+00:00")).timestamp() * 1e6)


@pytest.mark.anyio
async def test_good_but_empty_history_after_a_server_restart_is_a_reported_gap(rig, emulator, silent_history):  # noqa: F811
    sim = await SimServer(nodes=NODES, rate=100, faults=False, history_enabled=False).start()
    port = sim.port
    fwd = Forwarder(make_cfg(emulator), appliance_id="test-edge", spool_path=str(rig.path), writer=rig.writer)
    rig.writer.on_commit = fwd.notify
    fwd.start()
    try:
        src = rig.source(sim.endpoint, [GROUP])
        status = rig.statuses["plc"]
        async with running(src):
            await wait_until(lambda: status.data["state"] == "running", what="running")
            # (the forwarder deletes what the table acknowledged: the collector's own memory says what it took)
            await wait_until(lambda: len(src._last) >= NODES, every=0.2, what="every node once")
            await sim.stop()
            stopped_us = _now_us()
            await wait_until(lambda: status.data["state"] != "running", timeout=10, what="loss noticed")
            before = {p: fp[0] for p, fp in src._last.items()}
            # The server comes back with no memory of the hole, and says Good to every HistoryRead.
            restarted_us = _now_us()
            sim = await SimServer(port=port, nodes=NODES, rate=100, faults=False, seed=2, history_enabled=False).start()
            await wait_until(lambda: src.stats["sessions"] >= 2 and status.data["state"] == "running", timeout=20,
                             what="reconnected")
            await wait_until(lambda: src.stats["gaps_open"] >= NODES, timeout=10, what="a gap per node")
            # In the table: one gap row per node, through the forwarder (before the collector stops:
            # a row still in its buffer then is not written, the next start finds the gap again).
            await wait_until(lambda: len(_gap_rows(emulator)) >= NODES, timeout=30, every=0.3,
                             what="gap rows in the table")
        assert src.stats["backfilled"] == 0 and src.stats["backfill_empty"] == NODES
        assert src.stats["gaps_open"] == NODES
        hole = stopped_us, restarted_us
        rows = _gap_rows(emulator)
        assert len(rows) == NODES and {r["point"] for r in rows} == set(before)
        for r in rows:
            ends = _ends(r)
            assert r["source"] == "plc" and r["protocol"] == "opcua" and r["loss_reason"] == "history_empty"
            assert ends["from_us"] == _ts_us(r["source_ts"]) == before[r["point"]]  # the last value before the cut
            assert ends["from_us"] <= hole[0] and ends["to_us"] >= hole[1], (r, hole)
            assert ends["seconds"] >= (hole[1] - hole[0]) / 1e6

        # On the admin page's model and in /metrics.
        page, stats = _page(rig)
        row = next(s for s in page["sources"] if s["name"] == "plc")
        assert row["gaps_open"] == NODES and row["gap_seconds"] >= NODES * (hole[1] - hole[0]) / 1e6
        assert row["gaps"] and all(g["start_ts"] <= hole[0] / 1e6 and g["end_ts"] >= hole[1] / 1e6 for g in row["gaps"])
        assert all(g["reason"] == "history_empty" for g in row["gaps"])
        text = metrics.render(page, stats, None)
        assert f'zerobus_edge_source_gaps_open{{source="plc",type="opcua"}} {NODES}' in text
        assert 'zerobus_edge_source_gap_seconds{source="plc",type="opcua"}' in text

        # The page itself, and /metrics as served, from the same spool.
        app = create_app(make_config(rig.tmp_path), env=ENV)
        app.testing = True
        html = login(app.test_client(), "viewer").get("/").data.decode()
        row_html = html[html.index('id="source-plc"'):]
        row_html = row_html[:row_html.index("</tr>")]
        assert f'<span class="badge bad">{NODES}</span>' in row_html and 'title="history_empty"' in row_html
        assert any(p in row_html for p in before)
        served = app.test_client().get("/metrics").data.decode()
        assert f'zerobus_edge_source_gaps_open{{source="plc",type="opcua"}} {NODES}' in served
    finally:
        assert fwd.stop(10)
        await sim.stop()


@pytest.mark.anyio
async def test_only_a_node_that_changed_during_the_cut_is_a_gap(rig, silent_history):
    sim = await SimServer(nodes=NODES, rate=100, faults=False, history_enabled=False).start()
    proxy = await Proxy(sim.port).start()
    try:
        src = rig.source(f"opc.tcp://127.0.0.1:{proxy.port}/sim", [GROUP])
        changed = next(n for n in sim.nodes if n.vtype == ua.VariantType.Double)
        before = await _away(rig, sim, proxy, src, lambda: sim.set_value(changed.path, 42.5))  # the only change
        changed_us = _us(sim.history.values(changed.nodeid)[-1])
        assert src.stats["backfill_empty"] == NODES  # every node answered Good with nothing
        _the_only_gap(rig, src, "Plant/" + changed.path, before[changed.path], changed_us, "history_empty")
    finally:
        await proxy.cut()
        await sim.stop()


@pytest.mark.anyio
async def test_what_history_held_beyond_max_values_is_an_open_gap(rig):
    """History holds six new values of one node; the back-fill reads at most three values a node:
    the rest, from the last value read to the first live one, is a gap (max_values)."""
    sim = await SimServer(nodes=NODES, rate=100, faults=False).start()  # with history
    proxy = await Proxy(sim.port).start()
    try:
        src = rig.source(f"opc.tcp://127.0.0.1:{proxy.port}/sim", [GROUP], backfill={"max_values_per_node": 3})
        changed = next(n for n in sim.nodes if n.vtype == ua.VariantType.Double)
        point = "Plant/" + changed.path

        async def six_changes() -> None:
            base = datetime.now(timezone.utc)
            for i in range(6):
                await sim.set_value(changed.path, 40.0 + i, ts=base + timedelta(milliseconds=i))
        before = await _away(rig, sim, proxy, src, six_changes)
        written = [_us(dv) for dv in sim.history.values(changed.nodeid)[-6:]]
        assert written[0] > before[changed.path]
        landed = [r.source_ts for r in rig.readings()
                  if r.point == point and r.kind == "reading" and r.source_ts > before[changed.path]]
        # History's first values, then the live value: what lay between them never landed.
        read = landed[:-1]
        assert 1 <= len(read) < 3 and landed == written[:len(read)] + [written[-1]], (landed, written)
        assert src.stats["backfilled"] == len(read)  # the unchanged nodes' history held only what we had
        _the_only_gap(rig, src, point, read[-1], written[-1], "max_values")
    finally:
        await proxy.cut()
        await sim.stop()


@pytest.mark.anyio
async def test_with_the_back_fill_turned_off_a_reconnect_is_still_a_gap(rig):
    """backfill.enabled: false: no HistoryRead at all (the server has the history), and the node that
    changed while we were away is a gap (backfill_disabled); the unchanged ones are not."""
    sim = await SimServer(nodes=NODES, rate=100, faults=False).start()
    proxy = await Proxy(sim.port).start()
    try:
        src = rig.source(f"opc.tcp://127.0.0.1:{proxy.port}/sim", [GROUP], backfill={"enabled": False})
        changed = next(n for n in sim.nodes if n.vtype == ua.VariantType.Double)

        async def two_changes() -> None:
            await sim.set_value(changed.path, 41.5)  # held by the server's history, never read: lost to us
            await sim.set_value(changed.path, 42.5)
        before = await _away(rig, sim, proxy, src, two_changes)
        first, last = (_us(dv) for dv in sim.history.values(changed.nodeid)[-2:])
        assert src.stats["backfilled"] == 0 and "last_backfill" not in rig.statuses["plc"].data
        assert first not in {r.source_ts for r in rig.readings() if r.kind == "reading"}
        _the_only_gap(rig, src, "Plant/" + changed.path, before[changed.path], last, "backfill_disabled")
    finally:
        await proxy.cut()
        await sim.stop()


def test_the_first_value_after_the_reconnect_decides_the_gap():
    w = GapWatch()
    for p in ("changed", "unchanged", "no_time"):
        w.watch(p, 1_000, "history_empty", 9_000)
    assert w.first_value("changed", 5_000) == Gap("changed", 1_000, 5_000, "history_empty")
    assert w.first_value("unchanged", 1_000) is None  # the value from before the cut: nothing changed
    assert w.first_value("no_time", None) == Gap("no_time", 1_000, 9_000, "history_empty")  # cannot tell: a gap
    assert not w.pending
    shown = w.record(Gap("a", 0, 2_500_000, "history_empty"))
    assert (shown["gaps_open"], shown["gap_seconds"], shown["gaps"][0]["seconds"]) == (1, 2.5, 2.5)


def test_a_gap_marker_is_a_row_of_kind_gap_with_both_ends():
    m = decode(encode_gap_marker(source="plc", protocol="opcua", point="Plant/x", start_us=10, end_us=2_000_010,
                                 reason="history_empty", collected_ts=5))
    assert (m.kind, m.source, m.point, m.source_ts, m.loss_reason) == ("gap", "plc", "Plant/x", 10, "history_empty")
    assert json.loads(m.value_json) == {"from_us": 10, "to_us": 2_000_010, "seconds": 2.0}


def test_the_checkpoint_counts_committed_values_at_its_newest_time(tmp_path):
    c = Checkpoint(tmp_path / "c.json", "opc.tcp://x")
    for ts in (5, 7, 7, 7):
        c.advance("p", ts)
    c.advance("q", 3)
    assert (c.points["p"], c.at_newest("p"), c.at_newest("q")) == (7, 3, 1)
    c.write(c.snapshot())
    again = Checkpoint(tmp_path / "c.json", "opc.tcp://x")
    again.load()
    assert again.at_newest("p") == 3
    again.advance("p", 8)
    assert again.at_newest("p") == 1
