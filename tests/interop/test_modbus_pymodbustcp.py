"""Interop: our Modbus collector against pyModbusTCP's ModbusServer, a Modbus/TCP stack we did not write.

Our own simulator encodes with the collector's decode.py, so a byte-order mistake
shared by both would pass there. Here the registers are filled by pyModbusTCP's own
helpers (``long_list_to_word``, ``encode_ieee``; the byte swap of BADC/DCBA by hand),
served by its server, and the server's data handler records every request it
answered, so block planning is checked on the wire. Results: modbus/README.md,
"Interoperability".
"""

from __future__ import annotations

import asyncio
import threading

import pytest
from pyModbusTCP import utils
from pyModbusTCP.server import DataBank, DataHandler, ModbusServer

from edge.encode import BAD, GOOD
from simulators.kit.aio import running, wait_until
from tests.modbus.conftest import Rig, source_config
from edge.sources.modbus.collector import Source

W32 = 0xFFFFFFFF
W64 = (1 << 64) - 1


def swap_bytes(words: list[int]) -> list[int]:
    return [((w & 0xFF) << 8) | (w >> 8) for w in words]


def in_order(big_endian_words: list[int], order: str) -> list[int]:
    """pyModbusTCP writes high word first (ABCD) or low word first (CDAB); BADC/DCBA swap the bytes too."""
    words = list(big_endian_words) if order in ("ABCD", "BADC") else list(reversed(big_endian_words))
    return swap_bytes(words) if order in ("BADC", "DCBA") else words


def int32_words(v: int) -> list[int]:
    return utils.long_list_to_word([v & W32], big_endian=True)


def int64_words(v: int) -> list[int]:
    return utils.long_list_to_word([v & W64], big_endian=True, long_long=True)


def float32_words(v: float) -> list[int]:
    return utils.long_list_to_word([utils.encode_ieee(v)], big_endian=True)


def float64_words(v: float) -> list[int]:
    return utils.long_list_to_word([utils.encode_ieee(v, double=True)], big_endian=True, long_long=True)


VALUES = {  # type -> (value, its big-endian words as pyModbusTCP encodes them)
    "int16": (-12345, [-12345 & 0xFFFF]),
    "uint16": (54321, [54321]),
    "int32": (-123456789, int32_words(-123456789)),
    "uint32": (3_000_000_000, int32_words(3_000_000_000)),
    "int64": (-(1 << 62) - 5, int64_words(-(1 << 62) - 5)),
    "float32": (-1234.5, float32_words(-1234.5)),
    "float64": (2.718281828459045, float64_words(2.718281828459045)),
}
ORDERS = ("ABCD", "CDAB", "BADC", "DCBA")


class Recording(DataHandler):
    """pyModbusTCP's own data handler, recording (function, address, count) of every read it answered."""

    def __init__(self, bank: DataBank):
        super().__init__(bank)
        self.reads: list[tuple[str, int, int]] = []
        self.lock = threading.Lock()

    def _log(self, fn: str, address: int, count: int) -> None:
        with self.lock:
            self.reads.append((fn, address, count))

    def read_h_regs(self, address, count, srv_info):
        self._log("h", address, count)
        return super().read_h_regs(address, count, srv_info)

    def read_i_regs(self, address, count, srv_info):
        self._log("i", address, count)
        return super().read_i_regs(address, count, srv_info)

    def read_coils(self, address, count, srv_info):
        self._log("c", address, count)
        return super().read_coils(address, count, srv_info)

    def read_d_inputs(self, address, count, srv_info):
        self._log("d", address, count)
        return super().read_d_inputs(address, count, srv_info)


@pytest.fixture
def server():
    bank = DataBank(h_regs_size=1000, i_regs_size=1000, coils_size=100, d_inputs_size=100)
    handler = Recording(bank)
    srv = ModbusServer(host="127.0.0.1", port=0, no_block=True, data_hdl=handler)
    srv.start()
    srv.port = srv._service.server_address[1]  # port 0: the kernel's choice
    srv.bank, srv.handler = bank, handler
    yield srv
    srv.stop()


def typed_points() -> tuple[list[dict], dict[str, object]]:
    """Every numeric type x word order on holding registers 0.., as points and expected values."""
    points, expected, address = [], {}, 0
    for dtype, (value, words) in VALUES.items():
        for order in ORDERS:
            name = f"{dtype}/{order}"
            points.append({"name": name, "table": "holding_registers", "address": address, "type": dtype, "order": order})
            expected[name] = value
            address += len(words)
    return points, expected


def fill(bank: DataBank) -> None:
    address = 0
    for dtype, (_value, words) in VALUES.items():
        for order in ORDERS:
            assert bank.set_holding_registers(address, in_order(words, order))
            address += len(words)


def collect(tmp_path, devices, port, until, **options):
    async def main():
        rig = Rig(tmp_path)
        # A 1 s timeout: these tests are about what the stack answers, not about a loaded host's latency.
        src = Source(source_config(devices, port, poll_interval=0.05, timeout=1.0, **options), rig.context("foreign"))
        async with running(src):
            await wait_until(lambda: until(src), 20)
        rig.close()
        return rig.readings(), src

    return asyncio.run(main())


def latest(readings) -> dict:
    out = {}
    for r in readings:
        out[r.point] = r
    return out


def test_every_type_and_word_order_from_a_foreign_server(server, tmp_path):
    fill(server.bank)
    points, expected = typed_points()
    temps = [(i * 37 - 1000) & 0xFFFF for i in range(67)]
    server.bank.set_holding_registers(200, temps)
    server.bank.set_holding_registers(300, [32767])  # full scale of a scaled int16
    server.bank.set_input_registers(10, float32_words(65.25))
    server.bank.set_coils(5, [True, False, True])
    server.bank.set_discrete_inputs(7, [False, True])
    devices = [{"device_id": 1, "points": points + [
        {"name": "scaled", "table": "holding_registers", "address": 300, "type": "int16", "scale": 0.1},
        {"name": "flow", "table": "input_registers", "address": 10, "type": "float32"},
        {"name": "c5", "table": "coils", "address": 5}, {"name": "c6", "table": "coils", "address": 6},
        {"name": "c7", "table": "coils", "address": 7},
        {"name": "d8", "table": "discrete_inputs", "address": 8},
    ], "arrays": [{"name": "temp_{i}", "start": 200, "table": "holding_registers", "count": 67, "type": "int16",
                   "scale": 0.1}]}]
    readings, src = collect(tmp_path, devices, server.port, lambda s: s.counters["cycles_total"] >= 2)
    got = latest(readings)
    assert all(r.quality == GOOD for r in got.values()), [(r.point, r.status_code) for r in got.values() if r.quality != GOOD]
    for name, want in expected.items():
        r = got[name]
        value = r.value_double if isinstance(want, float) else r.value_int
        assert value == want, (name, value, want)
        assert r.data_type == name.split("/")[0]
    assert got["scaled"].value_double == 3276.7  # not 3276.7000000000003
    assert got["flow"].value_double == 65.25
    assert [got[c].value_bool for c in ("c5", "c6", "c7", "d8")] == [True, False, True, True]
    assert [got[f"temp_{i}"].value_double for i in range(67)] == [
        round(((t - 0x10000) if t & 0x8000 else t) * 0.1, 1) for t in temps]
    # Block reads as the foreign server saw them: every holding register map in as few requests as the limits allow.
    reads = set(server.handler.reads)
    assert ("h", 0, 64) in reads  # 28 typed points, 64 registers, one request
    assert ("h", 200, 67) in reads  # the 67-element array, one request
    assert ("h", 300, 1) in reads and ("i", 10, 2) in reads and ("c", 5, 3) in reads and ("d", 8, 1) in reads


def test_a_changed_register_and_an_illegal_address(server, tmp_path):
    """The foreign server answers an address past its bank with exception 2: that block is BAD, the others GOOD."""
    server.bank.set_holding_registers(0, float32_words(1.5))
    register_map = tmp_path / "plc.csv"  # the map as a PLC tool exports it
    register_map.write_text("Tag Name;Register Type;Address;Data Type\n"
                            "ok;Holding Register;0;REAL\nmissing;Holding Register;0x1388;WORD\n")
    devices = [{"device_id": 1, "register_map": str(register_map)}]

    def changed(src):
        if src.counters["cycles_total"] == 3:
            server.bank.set_holding_registers(0, float32_words(-7.25))
        return src.counters["cycles_total"] >= 8

    readings, _ = collect(tmp_path, devices, server.port, changed)
    ok = [r.value_double for r in readings if r.point == "ok"]
    assert ok[0] == 1.5 and ok[-1] == -7.25 and all(r.quality == GOOD for r in readings if r.point == "ok")
    missing = [r for r in readings if r.point == "missing"]
    assert missing and {(r.quality, r.status_code) for r in missing} == {(BAD, 2)}
