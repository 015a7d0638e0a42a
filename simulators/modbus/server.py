"""A pymodbus TCP server whose registers follow the plant model, with fault injection.

The register map is the collector's own ``devices`` list (``edge.sources.modbus.collector``
config), so the simulator and the collector cannot disagree about addresses,
types or byte orders: a point whose ``name`` is a plant signal path
(``line1/press1/temperature``) follows that signal; any other point holds a
value set with ``set_value`` (0 until then).

Faults per device id:

- ``set_offline(dev, True)``: the device stops answering (requests time out), as
  a PLC behind a gateway that lost power;
- ``set_exception(dev, code)``: every request to it gets Modbus exception
  ``code`` (4 device failure, 6 busy, 0x0B gateway target failed to respond, ...);
- a plant ``offline`` fault on a machine freezes that machine's registers (a PLC
  keeps the last value of a dead field device);
- addresses outside a device's mapped span answer exception 2 (illegal data address);
- ``set_register_fault(dev, table, address, kind)``: a read that covers that one register
  gets exception ``kind`` (an int), or the device closes the TCP connection (``"close"``,
  FIN) or resets it (``"reset"``, RST) instead of answering, or never answers (``"silent"``);
  ``kind=None`` clears it. The reads that do not cover it are served as usual;
- ``stop()`` / ``start()`` on the same port: the whole endpoint goes away and back.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import yaml
from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.exceptions import NoSuchIdException
from pymodbus.server import ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler

from edge.configtypes import build
from edge.sources.modbus import decode as dec
from edge.sources.modbus.collector import Config
from edge.sources.modbus.plan import TABLES, PointSpec
from simulators.modbus.lean import LeanServer
from simulators.plant import Plant

log = logging.getLogger("simulators.modbus")

_FC_TABLE = {1: "coils", 5: "coils", 15: "coils", 2: "discrete_inputs", 3: "holding_registers",
             6: "holding_registers", 16: "holding_registers", 22: "holding_registers", 23: "holding_registers",
             4: "input_registers"}


def load_map(path: str | Path) -> tuple[Config, dict[str, Any]]:
    """Read a map file: ``devices`` (+ optional ``address_base``, ``order``) and ``plant: {lines, seed}``."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    return parse_map(raw)


def parse_map(raw: dict[str, Any]) -> tuple[Config, dict[str, Any]]:
    raw = dict(raw)
    plant = raw.pop("plant", {}) or {}
    cfg = build(Config, {"name": "simulator", "type": "modbus", "host": "127.0.0.1", **raw}, "map")
    return cfg, plant


class RegisterStore(ModbusServerContext):
    """pymodbus' server datastore interface over plain lists, with per-device faults.

    Subclasses ModbusServerContext only so that ModbusTcpServer accepts it as-is
    (the "old simulator" path hands every request straight to us).
    """

    def __init__(self, points: list[PointSpec]):  # pylint: disable=super-init-not-called
        self.old_simulator = True
        self.simdevices = []
        self.spans: dict[tuple[int, str], tuple[int, int]] = {}
        for p in points:
            lo, hi = self.spans.get((p.device_id, p.table), (p.address, p.end))
            self.spans[(p.device_id, p.table)] = (min(lo, p.address), max(hi, p.end))
        self.data: dict[tuple[int, str], list] = {
            key: [False if TABLES[key[1]][1] else 0] * (hi - lo) for key, (lo, hi) in self.spans.items()
        }
        self.devices = sorted({p.device_id for p in points})
        self.offline: set[int] = set()
        self.exceptions: dict[int, int] = {}
        self.register_faults: dict[tuple[int, str, int], int | str] = {}  # (device, table, address) -> kind
        self.requests = 0
        self.answered = 0
        self.errors = 0
        self.drops = 0  # connections closed or reset by a register fault

    def fault(self, device_id: int, func_code: int, address: int, count: int) -> int | str | None:
        """The register fault a request runs into (the first covered faulty register), if any."""
        table = _FC_TABLE.get(func_code, "")
        for (dev, tab, addr), kind in self.register_faults.items():
            if dev == device_id and tab == table and address <= addr < address + count:
                return kind
        return None

    def drop(self, device_id: int, func_code: int, address: int, count: int) -> str | None:
        """``"close"`` / ``"reset"`` when the server must drop the connection instead of answering."""
        kind = self.fault(device_id, func_code, address, count) if self.register_faults else None
        if kind in ("close", "reset"):
            self.requests += 1
            self.drops += 1
            return str(kind)
        return None

    def device_ids(self):
        return list(self.devices)

    def _area(self, device_id: int, func_code: int, address: int, count: int) -> tuple[list, int] | ExcCodes:
        self.requests += 1
        if device_id not in self.devices or device_id in self.offline:
            raise NoSuchIdException(f"device {device_id} does not answer")  # server drops the request
        if device_id in self.exceptions:
            self.errors += 1
            return ExcCodes(self.exceptions[device_id])
        kind = self.fault(device_id, func_code, address, count) if self.register_faults else None
        if kind == "silent":
            raise NoSuchIdException(f"device {device_id} does not answer for address {address}+{count}")
        if isinstance(kind, int):
            self.errors += 1
            return ExcCodes(kind)
        key = (device_id, _FC_TABLE.get(func_code, ""))
        span = self.spans.get(key)
        if span is None or address < span[0] or address + count > span[1]:
            self.errors += 1
            return ExcCodes.ILLEGAL_ADDRESS
        self.answered += 1
        return self.data[key], address - span[0]

    async def async_getValues(self, device_id: int, func_code: int, address: int, count: int = 1):
        area = self._area(device_id, func_code, address, count)
        if isinstance(area, ExcCodes):
            return area
        data, i = area
        return data[i:i + count]

    async def async_setValues(self, device_id: int, func_code: int, address: int, values):
        area = self._area(device_id, func_code, address, len(values))
        if isinstance(area, ExcCodes):
            return area
        data, i = area
        data[i:i + len(values)] = list(values)
        return None

    def put(self, p: PointSpec, words: list) -> None:
        data = self.data[(p.device_id, p.table)]
        i = p.address - self.spans[(p.device_id, p.table)][0]
        data[i:i + len(words)] = words


class _FaultyRequestHandler(ServerRequestHandler):
    """pymodbus' connection handler, except that a request hitting a ``close``/``reset`` register drops the connection."""

    async def handle_request(self):
        pdu = self.last_pdu
        if pdu is not None and self.transport is not None:
            kind = self.server.context.drop(pdu.dev_id, pdu.function_code, getattr(pdu, "address", 0),
                                            getattr(pdu, "count", 1))
            if kind is not None:
                (self.transport.abort if kind == "reset" else self.transport.close)()
                return
        await super().handle_request()


class _FaultyTcpServer(ModbusTcpServer):
    def callback_new_connection(self):
        return _FaultyRequestHandler(self, self.trace_packet, self.trace_pdu, self.trace_connect)


def raw_words(p: PointSpec, value: Any, current: list) -> list:
    """Engineering value -> what the device holds for point ``p`` (clamped to the type's range)."""
    if p.is_bit_table:
        return [bool(value)]
    if p.dtype == "bool":  # one bit of a register: keep the other bits
        word = dec.decode(current, "uint16", p.order)
        word = (word | (1 << p.bit)) if value else (word & ~(1 << p.bit))
        return dec.encode(word, "uint16", p.order)
    if p.dtype == "string":
        text = str(value)[: 2 * p.count]
        return dec.encode(text, "string", p.order, length=p.count)
    raw = dec.unscale_value(float(value), p.scale, p.offset) if (p.scale, p.offset) != (1.0, 0.0) else value
    rng = dec.int_range(p.dtype)
    if rng is not None:
        raw = min(max(int(round(raw)), rng[0]), rng[1])
    return dec.encode(raw, p.dtype, p.order)


class PlantModbusServer:
    def __init__(self, cfg: Config, plant: Plant | None = None, host: str = "127.0.0.1", port: int = 0, speed: float = 1.0,
                 engine: str = "pymodbus"):
        if engine not in ("pymodbus", "lean"):
            raise ValueError(f"engine must be pymodbus or lean, got {engine!r}")
        self.engine = engine
        self.cfg = cfg
        self.plant = plant
        self.host = host
        self.port = port
        self.speed = speed
        self.points: list[PointSpec] = list(cfg.points)
        self.store = RegisterStore(self.points)
        signals = {s.path for s in plant.signals} if plant else set()
        self.bound = [p for p in self.points if p.name in signals]
        self.unbound = [p for p in self.points if p.name not in signals]
        self._by_name = {p.name: p for p in self.points}
        self._server: ModbusTcpServer | LeanServer | None = None
        self.ticks = 0
        self.updates = 0

    # ---- values -------------------------------------------------------------------------

    def set_value(self, name: str, value: Any) -> None:
        p = self._by_name[name]
        key = (p.device_id, p.table)
        i = p.address - self.store.spans[key][0]
        self.store.put(p, raw_words(p, value, self.store.data[key][i:i + p.count]))

    def get_words(self, name: str) -> list:
        p = self._by_name[name]
        key = (p.device_id, p.table)
        i = p.address - self.store.spans[key][0]
        return self.store.data[key][i:i + p.count]

    def tick(self, t: float) -> int:
        """Write every plant-bound point's value at plant time ``t``; returns how many changed."""
        if self.plant is None:
            return 0
        n = 0
        for p in self.bound:
            v = self.plant.value(p.name, t)
            if v is None:  # offline field device: the PLC keeps the last value
                continue
            self.set_value(p.name, v)
            n += 1
        self.ticks += 1
        self.updates += n
        return n

    # ---- faults -------------------------------------------------------------------------

    def set_offline(self, device_id: int, offline: bool = True) -> None:
        (self.store.offline.add if offline else self.store.offline.discard)(device_id)

    def set_register_fault(self, device_id: int, table: str, address: int, kind: int | str | None) -> None:
        """Fault one register (PDU address): an exception code, ``"close"``, ``"reset"`` or ``"silent"``; None clears."""
        key = (device_id, table, address)
        if kind is None:
            self.store.register_faults.pop(key, None)
        elif kind in ("close", "reset", "silent"):
            self.store.register_faults[key] = kind
        else:
            self.store.register_faults[key] = int(ExcCodes(kind))

    def set_exception(self, device_id: int, code: int | None) -> None:
        if code is None:
            self.store.exceptions.pop(device_id, None)
        else:
            self.store.exceptions[device_id] = int(ExcCodes(code))

    # ---- lifecycle ----------------------------------------------------------------------

    async def start(self) -> int:
        """Listen (again) on host:port (port 0: a free one, kept for restarts); returns the port."""
        if self.engine == "lean":
            server = LeanServer(self.store, self.host, self.port)
            port = await server.start()
        else:
            server = _FaultyTcpServer(self.store, address=(self.host, self.port), ignore_missing_devices=True)
            await server.serve_forever(background=True)
            port = server.transport.sockets[0].getsockname()[1]
        self._server = server
        self.port = port
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            if isinstance(self._server, LeanServer):
                await self._server.stop()
            else:
                await self._server.shutdown()
            self._server = None

    def connected_clients(self) -> int:
        """TCP connections open right now (a device may accept only a few)."""
        if self._server is None:
            return 0
        if isinstance(self._server, LeanServer):
            return len(self._server.connections)
        return len(self._server.active_connections)

    async def run_plant(self, tick: float = 0.1, t0: float = 0.0) -> None:
        """Advance plant time with the wall clock (times ``speed``) and update registers every ``tick``."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        while True:
            self.tick(t0 + (loop.time() - start) * self.speed)
            await asyncio.sleep(tick)

    def report(self) -> dict[str, Any]:
        s = self.store
        return {
            "engine": self.engine, "port": self.port, "clients": self.connected_clients(), "devices": s.devices, "points": len(self.points), "plant_points": len(self.bound),
            "static_points": len(self.unbound), "ticks": self.ticks, "updates": self.updates,
            "requests": s.requests, "answered": s.answered, "exception_responses": s.errors, "dropped_connections": s.drops,
            "offline": sorted(s.offline), "exceptions": {str(k): v for k, v in sorted(s.exceptions.items())},
        }
