"""The simulator: several processes, produced-vs-landed reconciliation from its reports, its asyncua hooks, its timestamps."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from simulators.opcua.server import SimServer, free_port
from simulators.kit.aio import running, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(150)]
ROOT = Path(__file__).resolve().parents[2]


async def test_two_processes_produced_equals_landed(rig, tmp_path):
    port = free_port()
    while True:  # the second process takes port + 1
        try:
            import socket

            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
            break
        except OSError:
            port = free_port()
    reports = tmp_path / "reports"
    sim = subprocess.Popen(
        [sys.executable, "-m", "simulators.opcua", "--port", str(port), "--processes", "2", "--nodes", "54",
         "--rate", "150", "--hold", "8", "--duration", "4", "--report-dir", str(reports)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        group = {"name": "g", "publishing_interval": "100ms", "sampling_interval": "0", "folders": [{"root": "Plant"}]}
        a = rig.source(f"opc.tcp://127.0.0.1:{port}/sim", [group], name="a")
        b = rig.source(f"opc.tcp://127.0.0.1:{port + 1}/sim", [group], name="b")
        by_endpoint = {a.cfg.endpoint: a, b.cfg.endpoint: b}
        async with contextlib.AsyncExitStack() as stack:
            # Each process holds its values for --hold seconds from its own start: subscribe to each
            # as soon as it is up, so every change it makes is one we can expect.
            for _ in range(2):
                line = await asyncio.to_thread(sim.stdout.readline)
                assert line.startswith("READY"), line
                await stack.enter_async_context(running(by_endpoint[line.split()[1]]))
            await wait_until(lambda: all(s.data["state"] == "running" for s in rig.statuses.values()), what="running")
            # Both processes stopped changing values (read in a thread: a blocked loop would stall the collectors).
            done = [await asyncio.to_thread(sim.stdout.readline) for _ in range(2)]
            assert all(d.startswith("DONE") for d in done), done

            def produced() -> dict[tuple[str, str], int]:
                out = {}
                for name, p in (("a", port), ("b", port + 1)):
                    rep = json.loads((reports / f"opcua-sim-{p}.json").read_text())
                    for nid, n in rep["per_node"].items():
                        out[(name, nid)] = n
                return out

            def landed() -> dict[tuple[str, str], int]:
                c = Counter()
                for r in rig.readings():
                    c[(r.source, "ns=2;s=" + r.point.removeprefix("Plant/").replace("/", "."))] += 1
                return dict(c)
            try:
                await wait_until(lambda: produced() == landed(), timeout=30, every=0.5, what="produced == landed")
            except AssertionError:
                p, got = produced(), landed()
                diff = {k: (p.get(k), got.get(k)) for k in set(p) | set(got) if p.get(k) != got.get(k)}
                raise AssertionError(f"{len(diff)} nodes differ (produced, landed): {sorted(diff.items())[:3]} "
                                     f"{[s.snapshot() for s in rig.statuses.values()]} {a.stats} {b.stats}")
        total = sum(produced().values())
        assert total > 600 and len(produced()) == 2 * 60  # 54 plant signals + 6 extras per process
    finally:
        sim.terminate()
        try:
            sim.wait(20)
        except subprocess.TimeoutExpired:
            sim.kill()


def test_the_asyncua_hooks_the_simulator_replaces_exist():
    # The simulator trims asyncua's data-change path (most of its CPU under load); an asyncua
    # upgrade that renames a hook must fail here, not silently slow the benchmark.
    import inspect

    from asyncua.server.monitored_item_service import MonitoredItemService, MonitoredItemValues

    from simulators.opcua.server import _lean_datachange_path

    params = list(inspect.signature(MonitoredItemService.datachange_callback).parameters)
    assert params == ["self", "handle", "value", "error"]
    _lean_datachange_path()
    assert MonitoredItemService._zerobus_lean
    mv = MonitoredItemValues()
    a, b = object(), object()
    mv.set_current_datavalue(a)
    mv.set_current_datavalue(b)
    assert mv.get_current_datavalue() is b and mv.get_old_datavalue() is a


def _dcn_cases():
    from datetime import datetime, timedelta, timezone

    from asyncua import ua

    vt = ua.VariantType
    t0 = datetime(2026, 11, 24, 3, 0, 0, 123456, tzinfo=timezone.utc)
    values = [
        (True, vt.Boolean), (-128, vt.SByte), (255, vt.Byte), (-32768, vt.Int16), (65535, vt.UInt16),
        (-(2**31), vt.Int32), (2**32 - 1, vt.UInt32), (-(2**63), vt.Int64), (2**64 - 1, vt.UInt64),
        (0.1, vt.Float), (float("nan"), vt.Double), ("Läuft", vt.String), ("", vt.String), (None, vt.String),
        (t0, vt.DateTime), (datetime(1500, 1, 1, tzinfo=timezone.utc), vt.DateTime), (None, vt.Null),
        ([1.0, 2.0], vt.Double), ([[1, 2], [3, 4]], vt.Int32), (ua.LocalizedText("x"), vt.LocalizedText),
        (ua.Argument(Name="a", DataType=ua.NodeId(11)), vt.ExtensionObject), (b"\x00", vt.ByteString),
    ]
    dvs = [ua.DataValue(ua.Variant(v, t), StatusCode=ua.StatusCode(s), SourceTimestamp=t0,
                        ServerTimestamp=t0 + timedelta(milliseconds=3))
           for (v, t), s in zip(values, [0, 0x40940000, 0x808A0000] * 10)]
    dvs += [ua.DataValue(), ua.DataValue(ua.Variant(1.5, vt.Double)),
            ua.DataValue(ua.Variant(2, vt.Int32), SourceTimestamp=t0, SourcePicoseconds=7),  # asyncua's own path
            ua.DataValue(ua.Variant(None, vt.Null), StatusCode=ua.StatusCode(0x808A0000), ServerTimestamp=t0)]
    items = [ua.MonitoredItemNotification(ClientHandle=i + 1, Value=dv) for i, dv in enumerate(dvs)]
    return [ua.DataChangeNotification(MonitoredItems=items), ua.DataChangeNotification(MonitoredItems=items[:1]),
            ua.DataChangeNotification(MonitoredItems=[]),
            ua.DataChangeNotification(MonitoredItems=items[:2], DiagnosticInfos=[ua.DiagnosticInfo()])]


def test_the_simulators_notification_encoder_writes_asyncuas_bytes():
    from asyncua import ua
    from asyncua.ua import ua_binary

    from simulators.opcua import encode

    for dcn in _dcn_cases():
        assert encode.struct_to_binary(dcn) == encode._original(dcn)
        back = ua_binary.struct_from_binary(ua.DataChangeNotification, ua.utils.Buffer(encode.struct_to_binary(dcn)))
        assert len(back.MonitoredItems) == len(dcn.MonitoredItems)
    assert encode.encode_datachange(_dcn_cases()[1]) is not None  # the common case is ours, not asyncua's
    assert encode.encode_datachange(_dcn_cases()[3]) is None  # DiagnosticInfos: asyncua's
    # A value that does not fit its type: asyncua's descriptive error, not a struct.error from us.
    bad = ua.DataChangeNotification(MonitoredItems=[ua.MonitoredItemNotification(
        ClientHandle=1, Value=ua.DataValue(ua.Variant(-1, ua.VariantType.UInt32)))])
    with pytest.raises(ua.UaError, match="Cannot pack VariantType.UInt32"):
        encode.struct_to_binary(bad)


def test_the_simulator_encodes_notifications_through_its_encoder():
    from asyncua.ua import ua_binary

    from simulators.opcua import encode
    from simulators.opcua.server import _lean_datachange_path

    _lean_datachange_path()
    assert ua_binary.struct_to_binary is encode.struct_to_binary
    # asyncua's ExtensionObject encoder looks the function up in its module at each call.
    calls = []
    original = encode.encode_datachange
    try:
        encode.encode_datachange = lambda dcn: calls.append(dcn) or original(dcn)
        blob = ua_binary.extensionobject_to_binary(_dcn_cases()[1])
    finally:
        encode.encode_datachange = original
    assert len(calls) == 1 and blob


async def test_a_node_never_has_two_values_with_one_source_timestamp():
    # 8 nodes (5 plant signals + 3 extras) at 2000 changes/s: ~100 changes per 50 ms tick, so
    # every tick goes round the nodes many times, as a CPU-starved simulator catching up does.
    # last_change and spectrum change on every visit; each value must get a source time of its
    # own (the reconnect tests count two readings of a node with one source time as a duplicate).
    sim = await SimServer(nodes=5, rate=2000, faults=False).start()
    try:
        changing = [n for n in sim.nodes if n.path.endswith(("/info/last_change", "/info/spectrum"))]
        assert len(changing) == 2
        await wait_until(lambda: all(sim.produced[n.key] > 50 for n in changing), what="extras changed")
        sim.pause()
        for node in sim.nodes:
            stamps = Counter(dv.SourceTimestamp for dv in sim.history.values(node.nodeid))
            same = {ts: k for ts, k in stamps.items() if k > 1}
            assert not same, f"{node.path}: {len(same)} source times carry several values, e.g. {next(iter(same.items()))}"
    finally:
        await sim.stop()
