"""Back-fill after the edge's own downtime via HistoryRead; what happens when the server has no history."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter

import pytest

from simulators.opcua.server import SimServer
from tests.opcua.conftest import by_point
from simulators.kit.aio import running, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(150)]

GROUP = {"name": "g", "publishing_interval": "100ms", "sampling_interval": "0",
         "folders": [{"root": "Plant", "exclude": ["*/info/*"]}]}


def _us(dt) -> int:
    return int(dt.timestamp() * 1e6)


async def test_restart_of_the_edge_backfills_the_downtime_from_history(rig):
    sim = await SimServer(nodes=27, rate=100, faults=False).start()
    try:
        opts = {"backfill": {"checkpoint_interval": "200ms"}}
        first = rig.source(sim.endpoint, [GROUP], **opts)
        async with running(first):
            await wait_until(lambda: rig.statuses["plc"].data["state"] == "running", what="running")
            await wait_until(lambda: len({r.point for r in rig.readings()}) >= 27, every=0.2, what="every node once")
        ckpt = rig.tmp_path / "data" / "plc.opcua-checkpoint.json"
        saved = json.loads(ckpt.read_text())["points"]
        assert len(saved) == 27  # written on the way down: one committed source time per node
        def collected_total() -> int:  # changes of the nodes this group takes (info/* excluded)
            return sum(v for k, v in sim.produced.items() if ".info." not in k)
        down_from = collected_total()
        # The edge is down, the plant goes on.
        await wait_until(lambda: collected_total() - down_from > 200, every=0.1, what="changes while the edge is down")
        missed = collected_total() - down_from
        assert missed > 150
        second = rig.source(sim.endpoint, [GROUP], **opts)  # a new process: only the data dir survives
        async with running(second):
            await wait_until(lambda: second.stats["backfilled"] > 0 and rig.statuses["plc"].data["state"] == "running",
                             what="back-fill")
            n = len(rig.readings())
            await wait_until(lambda: len(rig.readings()) > n + 50, every=0.2, what="live data after the back-fill")
            sim.pause()

            def complete() -> bool:
                per = by_point(rig.readings())
                for n in sim.nodes:
                    if "/info/" in n.path:
                        continue
                    got = {r.source_ts for r in per.get("Plant/" + n.path, [])}
                    first_ts = min(got)
                    want = {_us(dv.SourceTimestamp) for dv in sim.history.values(n.nodeid)}
                    if {t for t in want if t >= first_ts} - got:
                        return False
                return True
            await wait_until(complete, timeout=15, what="no hole over the downtime")
        readings = rig.readings()
        dupes = [k for k, c in Counter((r.point, r.source_ts, r.status_code) for r in readings).items() if c > 1]
        # At most the values committed after the last checkpoint write come again (here: none, clean stop).
        assert not dupes
        assert second.stats["backfilled"] >= missed  # the downtime (and the restart itself) came from history
        assert "back-filled" in rig.statuses["plc"].data["last_backfill"]
    finally:
        await sim.stop()


async def test_server_without_history_reports_the_open_gap(rig):
    sim = await SimServer(nodes=27, rate=60, faults=False, history_enabled=False).start()
    try:
        first = rig.source(sim.endpoint, [GROUP], backfill={"checkpoint_interval": "200ms"})
        async with running(first):
            await wait_until(lambda: rig.statuses["plc"].data["state"] == "running", what="running")
            await wait_until(lambda: len(rig.readings()) > 20, every=0.2, what="first readings")
        down_from = sum(sim.produced.values())
        await wait_until(lambda: sum(sim.produced.values()) - down_from > 30, every=0.1, what="changes while down")
        second = rig.source(sim.endpoint, [GROUP])
        async with running(second):
            await wait_until(lambda: rig.statuses["plc"].data["state"] == "running", what="running again")
            n = len(rig.readings())
            await wait_until(lambda: len(rig.readings()) > n + 20, what="live data goes on")
        status = rig.statuses["plc"].snapshot()
        assert status["backfill_unsupported"] == 27
        assert "no history" in status["last_error"] and "gap" in status["last_error"]
        assert second.stats["backfilled"] == 0
    finally:
        await sim.stop()


async def test_stopping_during_a_checkpoint_write_waits_for_it(rig):
    # The next start reads the checkpoint file: a stop that returned while the periodic write was
    # still in its thread let a quick restart find no checkpoint and skip the back-fill.
    sim = await SimServer(nodes=27, rate=60, faults=False).start()
    try:
        src = rig.source(sim.endpoint, [GROUP], backfill={"checkpoint_interval": "200ms"})
        started, release, written = threading.Event(), threading.Event(), threading.Event()
        write = src.checkpoint.write

        def slow_write(blob: bytes) -> None:  # the disk is slow: the write ends when the test says
            started.set()
            release.wait(30)
            write(blob)
            written.set()

        written_when_done = []
        async with running(src) as task:
            task.add_done_callback(lambda _: written_when_done.append(written.is_set()))
            await wait_until(lambda: len(rig.readings()) > 20, every=0.1, what="first readings")
            src.checkpoint.write = slow_write
            await wait_until(started.is_set, what="a checkpoint write in flight")
            # Stopping now cancels the emitter in the middle of that write. Release the write once the
            # emitter has stopped: run() must still be waiting for it then.
            release_task = asyncio.ensure_future(wait_until(lambda: src._emitter_task.done(), what="emitter stopped"))
            release_task.add_done_callback(lambda _: release.set())
        await release_task
        assert written_when_done == [True], "run() returned before the checkpoint was on disk"
        assert json.loads(src.checkpoint.path.read_text())["points"]
    finally:
        release.set()
        await sim.stop()
