"""A full spool under when_full=block: the collector holds (state "blocked"), loses nothing, resumes after acks."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from edge.encode import decode
from edge.spool import SpoolReader
from simulators.opcua.server import SimServer
from tests.opcua.conftest import Rig
from simulators.kit.aio import running, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


async def test_blocked_spool_holds_then_drains_without_loss(tmp_path):
    rig = Rig(tmp_path, max_bytes=150_000, when_full="block")  # ~800 readings
    sim = await SimServer(nodes=27, rate=400, faults=False, extras=False).start()
    delivered: list = []
    reader = SpoolReader(rig.path)
    last_seq = 0

    def drain() -> None:  # what the forwarder does: read, then ack (rows are deleted)
        nonlocal last_seq
        rows = reader.peek(last_seq, 1_000_000)
        if rows:
            delivered.extend(decode(b) for _, b in rows)
            last_seq = rows[-1][0]
            rig.writer.ack(last_seq).result(10)

    try:
        src = rig.source(sim.endpoint, [{"publishing_interval": "100ms", "sampling_interval": "0", "queue_size": 1000,
                                         "folders": [{"root": "Plant"}]}], max_buffered=2000, emit_max=500)
        states = []
        async with running(src):
            for _ in range(4):  # blocked for a while, then drained, a few times over
                await wait_until(lambda: rig.statuses["plc"].data["state"] == "blocked", timeout=20, what="blocked")
                states.append("blocked")
                await asyncio.sleep(0.7)  # held: the publish loop stalls, the server queues
                drain()
            sim.pause()
            want_total = sim.produced_total

            def expected() -> set:
                """Every change from our first value of each node on (earlier ones predate the subscription)."""
                first: dict[str, int] = {}
                for r in delivered:
                    first[r.point] = min(first.get(r.point, r.source_ts), r.source_ts)
                out = set()
                for n in sim.nodes:
                    p = "Plant/" + n.path
                    for dv in sim.history.values(n.nodeid):
                        t = int(dv.SourceTimestamp.timestamp() * 1e6)
                        if p not in first or t >= first[p]:
                            out.add((p, t))
                return out

            def all_landed() -> bool:
                drain()
                return expected() <= {(r.point, r.source_ts) for r in delivered}
            try:
                await wait_until(all_landed, timeout=30, every=0.3, what="every change delivered")
            except AssertionError:
                miss = sorted(expected() - {(r.point, r.source_ts) for r in delivered})
                raise AssertionError(f"{len(miss)} missing of {want_total}, first {miss[:5]}; {src.stats}; "
                                     f"{rig.statuses['plc'].snapshot()}; buffered {len(src._buf)}")
        assert states.count("blocked") == 4
        assert len(delivered) == len(expected()) <= want_total
        assert not [k for k, c in Counter((r.point, r.source_ts) for r in delivered).items() if c > 1]
    finally:
        reader._conn.close()
        await sim.stop()
        rig.close()
