"""The Modbus collector against a real pymodbus server, spooling into a real SQLite file."""

import asyncio
import json
import math
import socket
import time

import pytest
import yaml

from edge.encode import BAD, GOOD, decode
from edge.sources.modbus import decode as dec
from edge.sources.modbus.collector import STATUS_CONNECTION_CLOSED, STATUS_NO_CONNECTION, STATUS_TIMEOUT, Source
from simulators.modbus.server import PlantModbusServer, load_map
from simulators.plant import Plant
from tests.modbus.conftest import Rig, source_config, start_sim
from simulators.kit.aio import running, wait_until

# The pymodbus server engine, and the lean one used for load tests: both must serve the same bytes and faults.
ENGINES = pytest.mark.parametrize("engine", ["pymodbus", "lean"])

SAMPLES = {
    "int16": -12345, "uint16": 54321, "int32": -123456789, "uint32": 3_000_000_000,
    "int64": -(1 << 62) - 5, "uint64": (1 << 64) - 2, "float32": -1234.5, "float64": 2.718281828459045,
}


def _field(r):
    for f in ("value_int", "value_bool", "value_string", "value_double", "value_json"):
        if r.HasField(f):
            return f
    return None


def typed_value(r):
    f = _field(r)
    if f == "value_json":  # integers beyond int64 (uint64) travel as JSON, unrounded
        return json.loads(r.value_json)
    return None if f is None else getattr(r, f)


def first_by_point(readings):
    first = {}
    for r in readings:
        first.setdefault(r.point, r)
    return first


def every_type_and_order():
    """One device with every type x order on holding registers, plus coils and discrete inputs."""
    points, addr = [], 0
    for dtype, sample in SAMPLES.items():
        for order in dec.ORDERS:
            points.append({"name": f"{dtype}/{order}", "table": "holding_registers", "address": addr,
                           "type": dtype, "order": order, "unit": "u"})
            addr += dec.register_count(dtype)
    for order in dec.STRING_ORDERS:
        points.append({"name": f"string/{order}", "table": "input_registers", "address": addr, "type": "string",
                       "length": 5, "order": order})
        addr += 5
    for order in dec.ORDERS:
        for bit in (0, 9):
            points.append({"name": f"bit{bit}/{order}", "table": "input_registers", "address": addr, "type": "bool",
                           "bit": bit, "order": order})
            addr += 1
    points.append({"name": "scaled", "address": "40400", "type": "int16", "scale": 0.1, "offset": 5.0})
    points += [{"name": f"coil{i}", "address": f"0000{i + 1}"} for i in range(3)]
    points += [{"name": f"di{i}", "address": f"1000{i + 1}"} for i in range(3)]
    return [{"device_id": 7, "points": points}]


def expected_values():
    out = {}
    for dtype, sample in SAMPLES.items():
        for order in dec.ORDERS:
            out[f"{dtype}/{order}"] = sample
    for order in dec.STRING_ORDERS:
        out[f"string/{order}"] = "LINE-1/A"
    for order in dec.ORDERS:
        out[f"bit0/{order}"] = True
        out[f"bit9/{order}"] = False
    out["scaled"] = -7.3
    out.update({"coil0": True, "coil1": False, "coil2": True, "di0": False, "di1": True, "di2": False})
    return out


@ENGINES
def test_every_type_and_order_end_to_end(tmp_path, engine):
    async def main():
        devices = every_type_and_order()
        rig = Rig(tmp_path)
        sim = await start_sim(devices, engine=engine)
        expected = expected_values()
        for name, v in expected.items():
            sim.set_value(name, v)
        src = Source(source_config(devices, sim.port, poll_interval=0.05, connections=3, max_gap=0), rig.context("plc"))
        async with running(src):
            await wait_until(lambda: src.counters["cycles_total"] >= 2)
        await sim.stop()
        rig.close()
        return rig.readings(), src

    readings, src = asyncio.run(main())
    first = first_by_point(readings)
    assert set(first) == set(expected_values())
    for name, want in expected_values().items():
        r = first[name]
        assert (r.quality, r.protocol, r.source, r.kind) == (GOOD, "modbus", "plc", "reading"), name
        got = typed_value(r)
        if isinstance(want, float):
            assert got == pytest.approx(want, rel=1e-6), name
        else:
            assert got == want and type(got) is type(want), name
        assert r.source_ts > 0 and r.collected_ts >= r.source_ts
    assert first["float32/CDAB"].data_type == "float32" and first["float32/CDAB"].unit == "u"
    # one emit per cycle, all readings of a cycle share the poll time
    cycle = [r for r in readings if r.source_ts == first["coil0"].source_ts]
    assert len(cycle) == len(expected_values())
    assert src.ctx.status.snapshot()["state"] == "running"


TWO_DEVICES = [
    {"device_id": 1, "name": "plc-a", "points": [{"name": "a/t", "address": "40001", "type": "float32"},
                                                 {"name": "a/c", "address": "00001"}]},
    {"device_id": 2, "name": "plc-b", "points": [{"name": "b/t", "address": "40001", "type": "float32"},
                                                 {"name": "b/n", "address": "30001", "type": "uint32"}]},
]


@ENGINES
def test_device_offline_and_back(tmp_path, engine):
    async def main():
        rig = Rig(tmp_path)
        sim = await start_sim(TWO_DEVICES, engine=engine)
        for name in ("a/t", "b/t"):
            sim.set_value(name, 1.5)
        src = Source(source_config(TWO_DEVICES, sim.port, poll_interval=0.05, offline_retry=0.2, bad_repeat=0.5,
                                   connections=2),
                     rig.context("plc"))
        status = src.ctx.status
        async with running(src):
            await wait_until(lambda: src.counters["cycles_total"] >= 2)
            sim.set_offline(2)
            await wait_until(lambda: status.snapshot()["devices_offline"] == ["plc-b"])
            assert status.snapshot()["state"] == "degraded"
            assert "plc-b offline: no response from device 2" in status.snapshot()["last_error"]
            n_a = sum(1 for r in rig.readings() if r.point == "a/t")
            # Device 1 keeps being polled at full rate meanwhile (every 50 ms, not stalled by device 2's timeouts).
            await wait_until(lambda: sum(1 for r in rig.readings() if r.point == "a/t") >= n_a + 4, timeout=2.0,
                             what="device 1 polled on")
            assert sim.connected_clients() == 2  # probing never opens more than `connections`
            sim.set_offline(2, False)
            sim.set_value("b/t", 2.5)
            await wait_until(lambda: status.snapshot()["devices_offline"] == [])
            await wait_until(lambda: any(r.point == "b/t" and r.value_double == 2.5 for r in rig.readings()))
            assert status.snapshot()["state"] == "running"
        await sim.stop()
        rig.close()
        return rig.readings()

    readings = asyncio.run(main())
    b = [r for r in readings if r.point == "b/t"]
    qualities = [r.quality for r in b]
    # GOOD, then BAD while offline (timeout code), then GOOD again
    i_bad = qualities.index(BAD)
    assert GOOD in qualities[:i_bad] and qualities[-1] == GOOD
    bad = [r for r in b if r.quality == BAD]
    assert {r.status_code for r in bad} == {STATUS_TIMEOUT}
    assert all(not r.HasField("value_double") for r in bad)
    # the repeat limit holds: ~1 BAD per bad_repeat, not one per 50 ms poll
    assert len(bad) <= 6
    # device 1 never went BAD
    assert all(r.quality == GOOD for r in readings if r.point.startswith("a/"))


@ENGINES
def test_endpoint_down_and_back(tmp_path, engine):
    async def main():
        rig = Rig(tmp_path)
        sim = await start_sim(TWO_DEVICES, engine=engine)
        src = Source(source_config(TWO_DEVICES, sim.port, poll_interval=0.05, offline_retry=0.1), rig.context("plc"))
        status = src.ctx.status
        async with running(src):
            await wait_until(lambda: src.counters["cycles_total"] >= 2)
            await sim.stop()
            await wait_until(lambda: status.snapshot()["state"] == "disconnected")
            assert status.snapshot()["devices_offline"] == ["plc-a", "plc-b"]
            await wait_until(lambda: "cannot connect to 127.0.0.1" in (status.snapshot()["detail"] or ""))
            await sim.start()
            await wait_until(lambda: status.snapshot()["state"] == "running", timeout=15)
            mark = len(rig.readings())
            await wait_until(lambda: len(rig.readings()) > mark + 4)
        await sim.stop()
        rig.close()
        return rig.readings(), status

    readings, status = asyncio.run(main())
    codes = {r.status_code for r in readings if r.quality == BAD}
    # 1004: a read was waiting when the endpoint closed its connections
    assert STATUS_NO_CONNECTION in codes and codes <= {STATUS_NO_CONNECTION, STATUS_TIMEOUT, STATUS_CONNECTION_CLOSED}
    assert readings[-1].quality == GOOD
    # the state table in the spool shows it too (what the admin page reads)
    assert status.snapshot()["errors_total"] >= 1
    assert status.snapshot()["reconnects_total"] >= 1  # the same counter every source keeps


@ENGINES
def test_exception_responses_are_reported(tmp_path, engine):
    devices_sim = [{"device_id": 1, "points": [{"name": "ok", "address": "40001"}]}]
    # The collector asks for a register the device does not have, in its own block.
    devices_cfg = [{"device_id": 1, "points": [{"name": "ok", "address": "40001"},
                                               {"name": "missing", "address": "40101"}]}]

    async def main():
        rig = Rig(tmp_path)
        sim = await start_sim(devices_sim, engine=engine)
        sim.set_value("ok", 42)
        src = Source(source_config(devices_cfg, sim.port, poll_interval=0.05, bad_repeat=0.0), rig.context("plc"))
        status = src.ctx.status
        async with running(src):
            await wait_until(lambda: src.counters["cycles_total"] >= 3)
            assert status.snapshot()["devices_offline"] == []  # an exception is an answer
            sim.set_exception(1, 6)  # device busy
            await wait_until(lambda: any(r.status_code == 6 for r in rig.readings()))
            assert status.snapshot()["devices_offline"] == []
            sim.set_exception(1, 0x0B)  # gateway: target device failed to respond
            await wait_until(lambda: status.snapshot()["devices_offline"] == ["device1"])
        await sim.stop()
        rig.close()
        return rig.readings(), status

    readings, status = asyncio.run(main())
    missing = [r for r in readings if r.point == "missing"]
    assert missing and missing[0].quality == BAD and missing[0].status_code == 2  # illegal data address
    ok = [r for r in readings if r.point == "ok"]
    assert ok[0].quality == GOOD and ok[0].value_int == 42
    assert {r.status_code for r in ok if r.quality == BAD} >= {6, 0x0B}
    assert status.snapshot()["exception_responses_total"] >= 3


def test_unreachable_host_is_visible(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def main():
        rig = Rig(tmp_path)
        src = Source(source_config(TWO_DEVICES, port, poll_interval=0.05), rig.context("plc"))
        async with running(src):
            await wait_until(lambda: src.ctx.status.snapshot()["state"] == "disconnected")
            await wait_until(lambda: len(rig.readings()) >= 4)
        rig.close()
        return rig.readings(), src.ctx.status.snapshot(), rig

    readings, snap, rig = asyncio.run(main())
    assert f"cannot connect to 127.0.0.1:{port}" in snap["detail"]
    assert {(r.quality, r.status_code) for r in readings} == {(BAD, STATUS_NO_CONNECTION)}
    from edge.spool import SpoolReader

    # the spool's state table (what the admin page and `edge spool stats` read) says so too
    states = {s["name"]: s["value"] for s in SpoolReader(rig.path).states("source")}
    assert states["plc"]["state"] == "disconnected"
    assert states["plc"]["devices_offline"] == ["plc-a", "plc-b"]


def test_report_by_exception_end_to_end(tmp_path):
    devices = [{"device_id": 1, "points": [{"name": "x", "address": "40001", "type": "float32", "deadband": 0.5},
                                           {"name": "y", "address": "40003"}]}]

    async def main():
        rig = Rig(tmp_path)
        sim = await start_sim(devices)
        sim.set_value("x", 10.0)
        src = Source(source_config(devices, sim.port, poll_interval=0.02, report="on_change", heartbeat=60),
                     rig.context("plc"))
        async with running(src):
            await wait_until(lambda: src.counters["cycles_total"] >= 10)
            assert len(rig.readings()) == 2  # one each, nothing changed since
            sim.set_value("x", 10.3)  # inside the deadband
            c = src.counters["cycles_total"]
            await wait_until(lambda: src.counters["cycles_total"] >= c + 5)
            assert len(rig.readings()) == 2
            sim.set_value("x", 11.0)
            sim.set_value("y", 7)
            await wait_until(lambda: len(rig.readings()) == 4)
        await sim.stop()
        rig.close()
        return rig.readings()

    readings = asyncio.run(main())
    assert [(r.point, typed_value(r)) for r in readings[2:]] == [("x", 11.0), ("y", 7)]


def test_full_spool_pauses_polling_without_loss(tmp_path):
    devices = [{"device_id": 1, "points": [{"name": f"r{i}", "address": i, "table": "holding_registers"}
                                           for i in range(250)]}]

    async def main():
        rig = Rig(tmp_path, max_bytes=1024**2, when_full="block")
        sim = await start_sim(devices)
        src = Source(source_config(devices, sim.port, poll_interval=0.01), rig.context("plc"))
        status = src.ctx.status
        async with running(src):
            await wait_until(lambda: status.snapshot()["state"] == "blocked", timeout=30)
            rows = rig.rows()
            reads = src.counters["reads_total"]
            await asyncio.sleep(0.5)  # a window on purpose: nothing may be read or accepted during it
            assert rig.rows() == rows  # nothing accepted while full ...
            assert src.counters["reads_total"] == reads  # ... and polling waits instead of reading on
            assert len(rows) % 250 == 0  # whole cycles only: a cycle is one commit
            rig.writer.ack(rows[-1][0]).result(5)  # the forwarder delivered everything
            t_ack = time.time() * 1e6
            await wait_until(lambda: len(rig.rows()) >= 250)
            resumed = [decode(b) for _, b in rig.rows()[:250]]
            held_ts = {r.source_ts for r in resumed}
        await sim.stop()
        rig.close()
        return rows, held_ts, t_ack

    rows, held_ts, t_ack = asyncio.run(main())
    assert rows
    # the cycle that was refused while full is the first one committed afterwards: held, not dropped
    (ts,) = held_ts
    assert ts < t_ack


def test_plant_map_and_simulator_agree(tmp_path):
    cfg_map, plant_opts = load_map("simulators/modbus/plant_map.yaml")
    plant = Plant(**plant_opts)
    plant.inject("line2/pump1/flow", "out_of_range", start=0)

    async def main():
        rig = Rig(tmp_path)
        sim = PlantModbusServer(cfg_map, plant)
        t = 1234.5
        sim.tick(t)
        await sim.start()
        raw = yaml.safe_load(open("simulators/modbus/plant_map.yaml"))
        src = Source(source_config(raw["devices"], sim.port, poll_interval=0.05, connections=2), rig.context("plc"))
        async with running(src):
            await wait_until(lambda: src.counters["cycles_total"] >= 1 and len(rig.readings()) >= len(cfg_map.points))
        await sim.stop()
        rig.close()
        return rig.readings(), t

    readings, t = asyncio.run(main())
    by = first_by_point(readings)
    assert len(by) == 48 and all(r.quality == GOOD for r in by.values())
    for p in cfg_map.points:
        want, got = plant.value(p.name, t), typed_value(by[p.name])
        if p.dtype == "string":
            assert got == want[: 2 * p.count]
        elif isinstance(want, bool):
            assert got is want, p.name
        elif p.dtype in ("float32", "float64"):
            assert math.isclose(got, want, rel_tol=1e-6), p.name
        else:
            assert abs(got - want) <= p.scale / 2 + 1e-9, (p.name, got, want)
    assert typed_value(by["line2/pump1/flow"]) == 500.0  # the injected fault shows through


def test_dead_device_costs_two_timeouts_not_one_per_block(tmp_path):
    devices = [TWO_DEVICES[0], {"device_id": 2, "name": "plc-b", "points": [
        {"name": "b/hr", "address": "40001"}, {"name": "b/ir", "address": "30001"},
        {"name": "b/co", "address": "00001"}, {"name": "b/di", "address": "10001"}]}]

    async def main():
        rig = Rig(tmp_path)
        sim = await start_sim(devices)
        sim.set_offline(2)
        src = Source(source_config(devices, sim.port, poll_interval=0.02, offline_retry=3600), rig.context("plc"))
        async with running(src):
            await wait_until(lambda: src.counters["cycles_total"] >= 10)
        await sim.stop()
        rig.close()
        return src, rig.readings()

    src, readings = asyncio.run(main())
    # four blocks of the dead device, one connection: only the first two waited out their timeout (the
    # second tells a dead device from one block it does not answer; tests/modbus/test_block_isolation.py)
    assert src.counters["timeouts_total"] == 2
    assert src.counters["isolation_reads_total"] == 0  # a dead device is not bisected
    assert src.ctx.status.snapshot()["devices_offline"] == ["plc-b"]
    bad = {r.point for r in readings if r.quality == BAD}
    assert bad == {"b/hr", "b/ir", "b/co", "b/di"}
    assert sum(1 for r in readings if r.point == "a/t" and r.quality == GOOD) >= 9


def test_unresolvable_host_is_named(tmp_path, monkeypatch):
    real = socket.getaddrinfo

    def fake(host, *args, **kwargs):  # the resolver is the outermost edge: no DNS query leaves the machine
        if host == "plc-7.invalid":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)

    async def main():
        rig = Rig(tmp_path)
        cfg = source_config(TWO_DEVICES, 502, poll_interval=0.05)
        cfg.host = "plc-7.invalid"
        src = Source(cfg, rig.context("plc"))
        async with running(src):
            await wait_until(lambda: "does not resolve" in (src.ctx.status.snapshot()["detail"] or ""))
        rig.close()
        return src.ctx.status.snapshot()

    snap = asyncio.run(main())
    assert "host name 'plc-7.invalid' does not resolve" in snap["detail"] and "check plc.host" in snap["detail"]
    assert snap["state"] == "disconnected"


def test_poll_groups_run_at_their_own_intervals(tmp_path):
    devices = [{"device_id": 1, "poll_interval": "500ms", "points": [
        {"name": "slow", "address": 1, "table": "holding_registers"},
        {"name": "fast", "address": 2, "table": "holding_registers", "poll_interval": "20ms"}]}]

    async def main():
        rig = Rig(tmp_path)
        sim = await start_sim(devices, address_base=1)  # 1-based register numbers on both sides
        src = Source(source_config(devices, sim.port, address_base=1), rig.context("plc"))
        assert sorted((b.start, b.interval) for b in src.cfg.blocks) == [(0, 0.5), (1, 0.02)]
        async with running(src):
            await wait_until(lambda: sum(r.point == "slow" for r in rig.readings()) >= 2)
        await sim.stop()
        rig.close()
        return rig.readings()

    readings = asyncio.run(main())
    assert all(r.quality == GOOD for r in readings)
    fast = sum(r.point == "fast" for r in readings)
    slow = sum(r.point == "slow" for r in readings)
    assert slow >= 2 and fast >= 3 * slow
    # each group is its own cycle: a commit never mixes the two groups' poll times
    assert not {r.source_ts for r in readings if r.point == "fast"} & {r.source_ts for r in readings if r.point == "slow"}


def test_register_responses_decode_in_one_call_and_print_short():
    """The collector's register responses (registered with each pymodbus client) decode like pymodbus'
    own and describe themselves without formatting every register (pymodbus does that per PDU)."""
    import struct

    from pymodbus.pdu.decoders import DecodePDU

    from edge.sources.modbus.connection import _HoldingResponse, _InputResponse

    regs = list(range(0, 125 * 500, 500))
    for cls, fc in ((_HoldingResponse, 3), (_InputResponse, 4)):
        frame = bytes([fc, 250]) + struct.pack(">125H", *regs)
        ours, stock = DecodePDU(False), DecodePDU(False)
        ours.register(cls)
        got, want = ours.decode(frame), stock.decode(frame)
        assert type(got) is cls and isinstance(got, type(want))
        assert got.registers == want.registers == regs
        assert str(got) == f"{cls.__name__}(dev_id=0, transaction_id=0, registers=125)"
        assert str(regs[-1]) in str(want)  # pymodbus' own lists them all
        assert ours.decode(bytes([fc, 251]) + frame[2:]) is None  # odd byte count: refused, as a bad frame
