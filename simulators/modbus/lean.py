"""A minimal Modbus TCP server engine for load tests: reads only, same store and faults.

pymodbus' server spends ~120-150 us of CPU per request, so one simulator
process tops out near 7k requests/s and a benchmark measures the simulator,
not the collector. This engine parses MBAP frames and answers FC1-4 straight
from ``RegisterStore`` (a few tens of us per request). It honours the same
faults (offline device -> no answer, forced exception codes, exception 2 outside
the mapped span, per-register exceptions, silences and dropped connections) but implements no writes (exception 1, illegal function).
Tests of protocol behaviour use the pymodbus engine; this one is for throughput.
"""

from __future__ import annotations

import asyncio
import struct

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException

_MBAP = struct.Struct(">HHHB")
_ADDR_COUNT = struct.Struct(">HH")
_LIMITS = {1: 2000, 2: 2000, 3: 125, 4: 125}


def _pack_bits(bits: list) -> bytes:
    out = bytearray((len(bits) + 7) // 8)
    for i, b in enumerate(bits):
        if b:
            out[i >> 3] |= 1 << (i & 7)
    return bytes(out)


class LeanProtocol(asyncio.Protocol):
    def __init__(self, store, connections: set):
        self.store = store
        self.connections = connections
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.connections.add(self)

    def connection_lost(self, exc) -> None:
        self.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        out = []
        while len(buf) >= 8:
            tid, _proto, length, unit = _MBAP.unpack_from(buf)
            if len(buf) < 6 + length:
                break
            pdu, buf = buf[7:6 + length], buf[6 + length:]
            if len(pdu) >= 5 and (kind := self.store.drop(unit, pdu[0], *_ADDR_COUNT.unpack_from(pdu, 1))):
                if out:
                    self.transport.write(b"".join(out))
                (self.transport.abort if kind == "reset" else self.transport.close)()
                return
            resp = self.handle(unit, pdu)
            if resp is not None:
                out.append(_MBAP.pack(tid, 0, len(resp) + 1, unit) + resp)
        self.buf = buf
        if out:
            self.transport.write(b"".join(out))

    def handle(self, unit: int, pdu: bytes) -> bytes | None:
        fc = pdu[0] if pdu else 0
        if fc not in _LIMITS or len(pdu) < 5:
            return bytes((fc | 0x80, ExcCodes.ILLEGAL_FUNCTION))
        address, count = _ADDR_COUNT.unpack_from(pdu, 1)
        if not 1 <= count <= _LIMITS[fc]:
            return bytes((fc | 0x80, ExcCodes.ILLEGAL_VALUE))
        try:
            area = self.store._area(unit, fc, address, count)
        except NoSuchIdException:
            return None  # an offline device does not answer
        if isinstance(area, ExcCodes):
            return bytes((fc | 0x80, int(area)))
        data, i = area
        values = data[i:i + count]
        if fc in (1, 2):
            payload = _pack_bits(values)
        else:
            payload = struct.pack(f">{count}H", *values)
        return bytes((fc, len(payload))) + payload


class LeanServer:
    """Same start/stop shape as pymodbus' server, for PlantModbusServer(engine="lean")."""

    def __init__(self, store, host: str, port: int):
        self.store = store
        self.host = host
        self.port = port
        self.server: asyncio.base_events.Server | None = None
        self.connections: set[LeanProtocol] = set()

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: LeanProtocol(self.store, self.connections), self.host, self.port)
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for c in list(self.connections):
                c.transport.close()
            await self.server.wait_closed()
            self.server = None
