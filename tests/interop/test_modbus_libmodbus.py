"""Interop: our Modbus collector against libmodbus (C), a second Modbus/TCP stack we did not write.

``simulators/foreign/libmodbus_server.c`` is a small server on Debian's libmodbus: libmodbus
frames, parses and answers every request (its mapping, its exception responses); the C file
only fills the registers (byte layouts written by hand with shifts, independent of our
``decode.py``, plus libmodbus' own float helpers), changes some of them over time and adds the
field behaviours its flags ask for (unit ids, exceptions, closing the connection). The test
builds it with gcc into a cache directory (rebuilt when the source or libmodbus changes) and
runs the real collector against it. Results: modbus/README.md, "Interoperability".
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections import defaultdict
from pathlib import Path

import pytest

from edge.encode import BAD, GOOD
from edge.sources.modbus.collector import STATUS_NO_CONNECTION, STATUS_TIMEOUT, Source
from simulators.kit import procs
from simulators.kit.aio import running, wait_until
from simulators.kit.wait import wait_until as wait_sync
from tests.modbus.conftest import Rig, source_config

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "simulators" / "foreign" / "libmodbus_server.c"
CACHE = Path(os.environ.get("ZEROBUS_EDGE_CACHE", "/var/cache/zerobus-edge")) / "libmodbus"
ORDERS = ("ABCD", "CDAB", "BADC", "DCBA")

# What libmodbus 3.1.6's float helpers put on the wire on a little-endian host, by the name it gives
# them (upstream issues #358, #611, #757: the names do not match the bytes, and set/get do not round-trip).
FLOAT_HELPERS = {"3.1.6": {"abcd": "BADC", "badc": "ABCD", "cdab": "DCBA", "dcba": "CDAB"}}


def _pkg_config(*args: str) -> str:
    out = subprocess.run(["pkg-config", *args, "libmodbus"], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.fail("libmodbus-dev is not installed (bash ops/test.sh installs it): " + out.stderr.strip())
    return out.stdout.strip()


@pytest.fixture(scope="session")
def server_binary(tmp_path_factory) -> Path:
    """The C server, compiled once per source x libmodbus version (gcc, pkg-config flags)."""
    version = _pkg_config("--modversion")
    key = hashlib.sha256(SOURCE.read_bytes() + version.encode()).hexdigest()[:16]
    cache = CACHE
    try:
        cache.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=cache)
        probe.close()
    except OSError:  # not root and no ZEROBUS_EDGE_CACHE: build per session
        cache = tmp_path_factory.mktemp("libmodbus")
    binary = cache / f"libmodbus_server-{key}"
    if not binary.exists():
        tmp = cache / f".{binary.name}.{os.getpid()}"
        cmd = ["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(tmp), str(SOURCE),
               *_pkg_config("--cflags", "--libs").split()]
        out = subprocess.run(cmd, capture_output=True, text=True)
        assert out.returncode == 0, f"{' '.join(cmd)}\n{out.stderr}"
        os.replace(tmp, binary)  # atomic: a concurrent session sees the old binary or the whole new one
    return binary


class LibmodbusServer:
    """One server process; its stdout (JSON lines) goes to a file the test reads."""

    def __init__(self, binary: Path, tmp: Path, *args: str):
        self.binary, self.tmp, self.args = binary, tmp, list(args)
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.runs = 0
        self.start()

    def start(self) -> None:
        self.runs += 1
        self.out = self.tmp / f"libmodbus-{self.runs}.jsonl"
        with open(self.out, "w") as f:
            self.proc = subprocess.Popen([str(self.binary), "--port", str(self.port), *self.args],
                                         stdout=f, stderr=subprocess.STDOUT)
        listening = wait_sync(lambda: self._listening(), 10, "the libmodbus server listening")
        self.port, self.version = listening["port"], listening["libmodbus"]

    def _listening(self) -> dict | None:
        assert self.proc is not None and self.proc.poll() is None, self.out.read_text()
        return next((e for e in self.events() if e.get("event") == "listening"), None)

    def events(self, kind: str | None = None) -> list[dict]:
        lines = [ln for ln in self.out.read_text().splitlines() if ln.endswith("}")]
        return [e for e in map(json.loads, lines) if kind is None or e["event"] == kind]

    def kill(self) -> None:
        procs.kill(self.proc)


@pytest.fixture
def libmodbus(server_binary, tmp_path):
    servers: list[LibmodbusServer] = []

    def start(*args: str) -> LibmodbusServer:
        servers.append(LibmodbusServer(server_binary, tmp_path, *args))
        return servers[-1]

    yield start
    for s in servers:
        s.kill()


def hr(name: str, address: int, dtype: str = "uint16", **more) -> dict:
    return {"name": name, "table": "holding_registers", "address": address, "type": dtype, **more}


def by_cycle(readings) -> list[dict]:
    """The readings of each poll cycle (one source_ts), point -> reading, in order."""
    cycles: dict[int, dict] = defaultdict(dict)
    for r in readings:
        cycles[r.source_ts][r.point] = r
    return [cycles[k] for k in sorted(cycles)]


def collect(tmp_path, devices, port, until, **options):
    """Run the real collector against the port until ``until(src)``; the spooled readings and the source."""
    async def main():
        rig = Rig(tmp_path)
        # A 1 s timeout: these tests are about what the stack answers, not about a loaded host's latency.
        src = Source(source_config(devices, port, **{"poll_interval": 0.05, "bad_repeat": 0.0, "timeout": 1.0, **options}),
                     rig.context("plc"))
        async with running(src):
            await wait_until(lambda: until(src), 20)
        rig.close()
        return rig.readings(), src

    return asyncio.run(main())


def closed_codes() -> set[int]:
    """The collector's code(s) for "the device closed the connection", if it has one."""
    try:
        from edge.sources.modbus import codes
    except ImportError:
        return set()
    return {v for k, v in vars(codes).items() if k.startswith("STATUS_") and "CLOSED" in k}


TYPED = [hr("int16", 0, "int16"), hr("uint16", 1)] + [
    hr(f"{t}/{o}", base + 2 * i, t, order=o)
    for t, base in (("int32", 2), ("uint32", 10), ("float32", 18)) for i, o in enumerate(ORDERS)
] + [
    hr("scaled_int16", 26, "int16", scale=0.1), hr("scaled_uint16", 27, scale=0.01, offset=-100),
    hr("scaled_int32", 28, "int32", order="CDAB", scale=0.001),
    hr("tick", 100), hr("ramp_int32", 101, "int32", order="CDAB"), hr("ramp_float", 103, "float32", order="CDAB"),
    hr("saw", 105, "int16", scale=0.1),
    {"name": "ir_tick", "table": "input_registers", "address": 0, "type": "uint16"},
    {"name": "flow", "table": "input_registers", "address": 1, "type": "float32"},
]
EXPECTED = {"int16": -12345, "uint16": 54321, "scaled_int16": -273.1, "scaled_uint16": 555.35,
            "scaled_int32": 123456.789, "flow": 65.25}
EXPECTED.update({f"int32/{o}": -123456789 for o in ORDERS})
EXPECTED.update({f"uint32/{o}": 3_000_000_000 for o in ORDERS})
EXPECTED.update({f"float32/{o}": -1234.5 for o in ORDERS})
COILS = [True, False, True, True, False, False, True, False]


def value(r):
    for f in ("value_int", "value_double", "value_bool"):
        if r.HasField(f):
            return getattr(r, f)
    return None


def test_types_word_orders_scaling_bits_and_changing_values(libmodbus, tmp_path):
    srv = libmodbus()
    helpers = FLOAT_HELPERS.get(srv.version)
    assert helpers, f"libmodbus {srv.version}: record what its float helpers write (FLOAT_HELPERS, README)"
    points = TYPED + [
        hr(f"helper_{name}", 40 + 2 * i, "float32", order=helpers[name])
        for i, name in enumerate(("abcd", "badc", "cdab", "dcba"))]
    devices = [{"device_id": 1, "points": points,
                "arrays": [{"name": "c{i}", "table": "coils", "start": 0, "count": 9},
                           {"name": "d{i}", "table": "discrete_inputs", "start": 0, "count": 4}]}]

    def ticks(src) -> bool:
        return src.counters["cycles_total"] >= 12

    readings, _ = collect(tmp_path, devices, srv.port, ticks)
    cycles = by_cycle(readings)
    assert all(r.quality == GOOD for r in readings), {(r.point, r.status_code) for r in readings if r.quality != GOOD}
    for cycle in cycles:
        for name, want in EXPECTED.items():
            assert value(cycle[name]) == want, (name, value(cycle[name]), want)
        for name in ("helper_abcd", "helper_badc", "helper_cdab", "helper_dcba"):
            assert value(cycle[name]) == -1234.5, (name, value(cycle[name]))
        assert [value(cycle[f"c{i}"]) for i in range(8)] == COILS
        assert [value(cycle[f"d{i}"]) for i in range(4)] == [False, True, True, False]
        # The changing block is one request, so one consistent snapshot of what the server set.
        t = value(cycle["tick"])
        assert value(cycle["ramp_int32"]) == -1000 * t - 7
        assert value(cycle["ramp_float"]) == t * 0.25
        assert value(cycle["saw"]) == round(((t * 37) % 2001 - 1000) * 0.1, 1)
        assert {cycle[n].data_type for n in ("int32/CDAB", "ramp_int32")} == {"int32"}
        assert cycle["scaled_int16"].data_type == "int16" and cycle["float32/DCBA"].data_type == "float32"
    seen = [value(c["tick"]) for c in cycles]
    assert seen == sorted(seen) and len(set(seen)) >= 3, seen  # the values changed while polling
    assert {value(c["c8"]) for c in cycles} == {True, False}  # a coil that toggles


@pytest.mark.parametrize("others, code", [("exception", 11), ("silent", STATUS_TIMEOUT)])
def test_unit_ids(libmodbus, tmp_path, others, code):
    """Units 1 and 3 answer from their own maps; unit 7 is not there (a gateway's exception 11, or silence)."""
    srv = libmodbus("--unit", "1", "--unit", "3", "--other-units", others)
    devices = [{"device_id": d, "name": f"unit{d}", "points": [hr(f"unit{d}/id", 110), hr(f"unit{d}/u", 1)]}
               for d in (1, 3, 7)]

    def enough(src) -> bool:
        return src.counters["cycles_total"] >= 8

    readings, src = collect(tmp_path, devices, srv.port, enough, offline_retry=0.1, timeout=0.5)
    for d in (1, 3):  # each unit id reached its own map
        mine = [r for r in readings if r.point.startswith(f"unit{d}/")]
        assert mine and {(r.point, r.quality, value(r)) for r in mine} == {
            (f"unit{d}/id", GOOD, d), (f"unit{d}/u", GOOD, 54321)}
    seven = [r for r in readings if r.point.startswith("unit7/")]
    assert seven and {(r.quality, r.status_code) for r in seven} == {(BAD, code)}
    assert src.ctx.status.snapshot()["devices_offline"] == ["unit7"]
    assert src.ctx.status.snapshot()["state"] == "degraded"
    assert {e["unit"] for e in srv.events("other_unit")} == {7}


def test_exception_responses_keep_their_code(libmodbus, tmp_path):
    """Exception 2 and 6 from the server's flags, and libmodbus' own 2 for an address outside its mapping."""
    srv = libmodbus("--exception", "120:2", "--exception", "130:6")
    devices = [{"device_id": 1, "points": [hr("ok", 1), hr("illegal", 120), hr("busy", 130), hr("outside", 400)]}]
    readings, src = collect(tmp_path, devices, srv.port, lambda s: s.counters["cycles_total"] >= 5)
    for cycle in by_cycle(readings):
        got = {n: (r.quality, r.status_code if r.quality == BAD else value(r)) for n, r in cycle.items()}
        assert got == {"ok": (GOOD, 54321), "illegal": (BAD, 2), "busy": (BAD, 6), "outside": (BAD, 2)}
    assert src.ctx.status.snapshot()["devices_offline"] == []  # an exception is an answer
    assert src.counters["exception_responses_total"] >= 3
    assert {e["code"] for e in srv.events("exception")} == {2, 6}


def test_server_killed_and_restarted(libmodbus, tmp_path):
    """kill -9 of the server: the outage is BAD readings and a visible state; readings resume on restart."""
    srv = libmodbus()
    devices = [{"device_id": 1, "name": "lm", "points": [hr("tick", 100), hr("ramp_float", 103, "float32", order="CDAB")]}]

    async def main():
        rig = Rig(tmp_path)
        src = Source(source_config(devices, srv.port, poll_interval=0.05, bad_repeat=0.0, offline_retry=0.1, timeout=1.0),
                     rig.context("plc"))
        status = src.ctx.status
        async with running(src):
            await wait_until(lambda: src.counters["cycles_total"] >= 3, 10)
            srv.kill()
            await wait_until(lambda: status.snapshot()["state"] == "disconnected", 10, what="disconnected")
            assert status.snapshot()["devices_offline"] == ["lm"]
            await wait_until(lambda: "cannot connect" in (status.snapshot()["detail"] or ""), 10, what="refused")
            srv.start()  # the same port
            await wait_until(lambda: status.snapshot()["state"] == "running", 10, what="running again")
            mark = len(rig.readings())
            await wait_until(lambda: len(rig.readings()) > mark + 6, 10)
        rig.close()
        return rig.readings(), status.snapshot()

    readings, status = asyncio.run(main())
    quality = [r.quality for r in readings if r.point == "tick"]
    first_bad, last_bad = quality.index(BAD), len(quality) - 1 - quality[::-1].index(BAD)
    assert set(quality[:first_bad]) == {GOOD} and set(quality[last_bad + 1:]) == {GOOD}  # GOOD, outage, GOOD
    codes = {r.status_code for r in readings if r.quality == BAD}
    assert STATUS_NO_CONNECTION in codes and codes <= {STATUS_NO_CONNECTION, STATUS_TIMEOUT} | closed_codes()
    after = [r for r in readings[-4:] if r.point == "tick"]
    assert after and all(r.quality == GOOD for r in after)
    assert status["reconnects_total"] >= 1 and status["errors_total"] >= 1 and status["devices_offline"] == []


@pytest.mark.parametrize("fault", ["--close-on-illegal", "--exception"])
def test_one_bad_register_in_a_block_is_isolated(libmodbus, tmp_path, fault):
    """A read covering register 205 makes the server close the connection (or answer exception 2).

    Registers 200..209 are one block. The collector finds the register behind the failure: the
    nine others stay GOOD in every cycle, 205 alone is BAD with a code that says why.
    """
    srv = libmodbus(fault, "205" if fault == "--close-on-illegal" else "205:2")
    devices = [{"device_id": 1, "name": "lm", "points": [hr("unit_id", 110)],
                "arrays": [{"name": "r{i}", "table": "holding_registers", "start": 200, "count": 10,
                            "first_index": 200}]}]
    readings, src = collect(tmp_path, devices, srv.port, lambda s: s.counters["cycles_total"] >= 10,
                            offline_retry=0.1)
    why = closed_codes() if fault == "--close-on-illegal" else {2}
    assert srv.events("closed" if fault == "--close-on-illegal" else "exception")  # the fault did happen
    cycles = by_cycle(readings)
    assert len(cycles) >= 10
    for cycle in cycles:
        healthy = {n: (r.quality, value(r)) for n, r in cycle.items() if n != "r205"}
        assert healthy == {"unit_id": (GOOD, 1), **{f"r{a}": (GOOD, 800 + a) for a in range(200, 210) if a != 205}}
        assert cycle["r205"].quality == BAD and cycle["r205"].status_code in why, cycle["r205"].status_code
    assert src.ctx.status.snapshot()["devices_offline"] == []
