"""Subscription correctness against a real asyncua server: values, types, timestamps, StatusCodes, node selection."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from asyncua import ua

from simulators.opcua.server import SimServer
from tests.opcua.conftest import by_point
from simulators.kit.aio import running, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


def _distinct(readings):
    return {(r.point, r.source_ts, r.status_code) for r in readings}


async def test_folder_subscription_lands_every_change_once_with_server_times(rig):
    sim = await SimServer(nodes=60, rate=150, faults=False).start()
    try:
        src = rig.source(sim.endpoint, [{"name": "fast", "publishing_interval": "100ms", "sampling_interval": "0",
                                         "folders": [{"root": "Objects/Plant", "exclude": ["*/info/*"]}]}])
        async with running(src):
            await wait_until(lambda: rig.statuses["plc"].data["state"] == "running", what="running")
            await wait_until(lambda: sim.produced_total > 400, what="400 changes")
            sim.pause()
            points = [n for n in sim.nodes if "/info/" not in n.path]

            def landed_all() -> bool:
                got = {(r.point, r.source_ts) for r in rig.readings()}
                return all(("Plant/" + n.path, int(n_last.SourceTimestamp.timestamp() * 1e6)) in got
                           for n in points for n_last in sim.history.values(n.nodeid)[-1:])
            await wait_until(landed_all, what="the last value of every node landed")
        readings = rig.readings()
        assert len(readings) == len(_distinct(readings)), "a value landed twice"
        per = by_point(readings)
        assert set(per) == {"Plant/" + n.path for n in points}  # include/exclude honoured
        # Every change the server made after our first value of a node landed, with its own timestamps.
        for n in points:
            hist = sim.history.values(n.nodeid)
            got = {r.source_ts for r in per["Plant/" + n.path]}
            first = min(got)
            want = {int(dv.SourceTimestamp.timestamp() * 1e6) for dv in hist}
            want = {t for t in want if t >= first}
            assert want <= got, f"{n.path}: {len(want - got)} changes missing"
        for r in readings:
            assert r.server_ts and r.source_ts and r.collected_ts >= r.source_ts
        temp = per["Plant/line1/press1/temperature"][-1]
        assert temp.HasField("value_double") and temp.data_type == "Double" and temp.unit == "degC"
        assert per["Plant/line1/press1/motor_current"][-1].data_type == "Float"
        assert per["Plant/line1/press1/parts"][-1].data_type == "Int32"
        assert per["Plant/line1/press1/state"][-1].value_string in ("RUNNING", "IDLE", "FAULT", "OFFLINE")
        assert per["Plant/line1/press1/alarm"][-1].data_type == "Boolean"
        status = rig.statuses["plc"].snapshot()
        assert status["failed_count"] == 0 and status["readings_total"] == len(readings)
        assert src.stats["publish_fallbacks"] == 0 and "publish_fallbacks" not in status
    finally:
        await sim.stop()


async def test_nodeids_browse_paths_types_and_status_codes(rig):
    sim = await SimServer(nodes=30, rate=0, faults=False).start()
    try:
        src = rig.source(sim.endpoint, [{
            "name": "g", "publishing_interval": "100ms", "sampling_interval": "0",
            "nodes": ["ns=2;s=line1.press1.temperature", "nsu=urn:zerobus-edge:opcua-sim:plant;s=line1.info.spectrum"],
            "browse_paths": ["Objects/2:Plant/line1/info/limits", "Plant/line1/info/last_change"],
        }])
        async with running(src):
            await wait_until(lambda: len(rig.readings()) >= 4, what="initial values")
            old = datetime(2020, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)
            await sim.set_value("line1/press1/temperature", 21.5, ts=old)
            await sim.set_value("line1/press1/temperature", None, status=ua.StatusCodes.BadNotConnected)
            await sim.set_value("line1/press1/temperature", 999.0, status=ua.StatusCodes.UncertainEngineeringUnitsExceeded)
            await sim.set_value("line1/info/spectrum", [1.0, 2.0, 3.0])
            await wait_until(lambda: len(by_point(rig.readings()).get("ns=2;s=line1.press1.temperature", [])) >= 4,
                             what="temperature changes")
            await wait_until(lambda: len(by_point(rig.readings()).get(
                "nsu=urn:zerobus-edge:opcua-sim:plant;s=line1.info.spectrum", [])) >= 2, what="spectrum change")
        per = by_point(rig.readings())
        t = per["ns=2;s=line1.press1.temperature"]
        assert [r.quality for r in t[1:]] == ["GOOD", "BAD", "UNCERTAIN"]
        assert t[1].value_double == 21.5
        assert t[1].source_ts == int(old.timestamp()) * 1_000_000 + 678000  # the server's time, not ours
        assert t[2].status_code == 0x808A0000 and not t[2].HasField("value_double")
        assert t[3].status_code == 0x40940000 and t[3].value_double == 999.0
        assert json.loads(per["nsu=urn:zerobus-edge:opcua-sim:plant;s=line1.info.spectrum"][-1].value_json) == [1.0, 2.0, 3.0]
        assert json.loads(per["Plant/line1/info/limits"][0].value_json) == {"Low": 0.0, "High": 100.0}
        assert per["Plant/line1/info/limits"][0].data_type == "Range"
        assert per["Plant/line1/info/last_change"][0].value_string.endswith("Z")
        # Structures, arrays, DateTimes, Bad and Uncertain values: all through fastpublish, none handed back to asyncua.
        assert src.stats["notifications"] >= 8 and src.stats["publish_fallbacks"] == 0
    finally:
        await sim.stop()


async def test_absolute_deadband_is_applied_by_the_server(rig):
    sim = await SimServer(nodes=5, rate=0, faults=False, extras=False).start()
    try:
        src = rig.source(sim.endpoint, [{"publishing_interval": "50ms", "sampling_interval": "0",
                                         "deadband_type": "absolute", "deadband_value": 1.0,
                                         "nodes": ["ns=2;s=line1.press1.temperature"]}])
        async with running(src):
            await wait_until(lambda: len(rig.readings()) >= 1, what="initial value")
            for v in (0.5, 0.9, 2.5, 2.6, 4.0):
                await sim.set_value("line1/press1/temperature", v)
            await wait_until(lambda: len(rig.readings()) >= 3, what="deadband changes")
            await sim.set_value("line1/press1/temperature", 10.0)
            await wait_until(lambda: rig.readings()[-1].value_double == 10.0, what="last change")
        assert [r.value_double for r in rig.readings()] == [0.0, 2.5, 4.0, 10.0]
    finally:
        await sim.stop()
