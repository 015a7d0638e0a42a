"""Modbus TCP collector: polls register maps in block reads and spools every poll cycle.

One source = one TCP endpoint (a PLC or a gateway) with one or more device
(unit) ids behind it. Options and the address notation are documented in
``edge/sources/modbus/README.md`` and validated in ``config``; pure parts live in ``decode`` (bytes
<-> values) and ``plan`` (addresses, block planning, report-by-exception).

Failures have two channels and both become visible data:

- a Modbus exception response (the device answered "illegal data address",
  "device busy", ...): the block's points get ``quality=BAD`` with
  ``status_code`` = the exception code (1..11);
- no answer (timeout) or no TCP connection: ``status_code`` = ``STATUS_TIMEOUT``
  (1001) or ``STATUS_NO_CONNECTION`` (1002); a malformed answer gives
  ``STATUS_BAD_RESPONSE`` (1003). The device is listed in
  ``ctx.status["devices_offline"]`` and its blocks are only retried every
  ``offline_retry`` seconds, so one dead unit id does not stall the others.

Modbus carries no timestamps: ``source_ts`` is the wall-clock time the poll
cycle started, ``collected_ts`` the time its last response arrived.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu.register_message import ReadHoldingRegistersResponse, ReadInputRegistersResponse

from edge.backoff import Backoff
from edge.encode import BAD, GOOD, encode_reading
from edge.sources.modbus import decode as dec
from edge.sources.context import SourceContext, emit_with_backpressure
from edge.sources.states import State
from edge.sources.status import SourceStatus, now_us
from edge.sources.modbus.config import Config, DeviceConfig, PointConfig, build_points
from edge.sources.modbus.plan import TABLES, Block, PointSpec, ReportFilter

STATUS_TIMEOUT = 1001
STATUS_NO_CONNECTION = 1002
STATUS_BAD_RESPONSE = 1003
# Exception codes after which the device (not just the request) is unreachable.
_GATEWAY_CODES = (0x0A, 0x0B)


def decode_point(p: PointSpec, values: list, block_start: int) -> Any:
    """One point's engineering value from its block's registers (or bits)."""
    i = p.address - block_start
    if p.is_bit_table:
        return bool(values[i])
    raw = dec.decode(values[i:i + p.count], p.dtype, p.order, bit=p.bit)
    return dec.scale_value(raw, p.scale, p.offset)


def _unpack_registers(pdu: ReadHoldingRegistersResponse, data: bytes) -> None:
    # pymodbus 3.16 unpacks one register per struct call (~40 us per 125 registers); one call does it all.
    n = data[0]
    if n >= len(data) or n % 2:
        raise ModbusIOException(f"byte_count {n} does not fit a packet of {len(data)} bytes", function_code=pdu.function_code)
    pdu.registers = list(struct.unpack(f">{n // 2}H", data[1:1 + n]))


def _short_str(pdu: ReadHoldingRegistersResponse) -> str:
    # pymodbus formats every decoded PDU for a debug line even with debug logging off; the list of
    # 125 registers made that ~9 us of every read (a sixth of the decode). The count says enough.
    return (f"{type(pdu).__name__}(dev_id={pdu.dev_id}, transaction_id={pdu.transaction_id}, "
            f"registers={len(pdu.registers)})")


class _HoldingResponse(ReadHoldingRegistersResponse):
    decode = _unpack_registers
    __str__ = _short_str


class _InputResponse(ReadInputRegistersResponse):
    decode = _unpack_registers
    __str__ = _short_str


class _ReadFailed(Exception):
    def __init__(self, code: int, message: str, device_down: bool):
        super().__init__(message)
        self.code = code
        self.device_down = device_down


class _Connection:
    """One TCP connection; reconnects follow the backoff every source uses (pymodbus' own is turned off).

    Not the ``Supervisor`` loop: a Modbus source keeps polling while its connection is down,
    and every poll of a device it cannot reach is a BAD reading (``STATUS_NO_CONNECTION``).
    """

    def __init__(self, cfg: Config, index: int, status: SourceStatus | None = None):
        self.cfg = cfg
        self.status = status
        self.was_up = False
        self.client = AsyncModbusTcpClient(
            cfg.host, port=cfg.port, name=f"{cfg.name}#{index}", timeout=float(cfg.timeout), retries=cfg.retries,
            # 0 disables pymodbus' background reconnect task, whose default cap is 300 s.
            reconnect_delay=0, reconnect_delay_max=0,
        )
        self.client.register(_HoldingResponse)
        self.client.register(_InputResponse)
        self.backoff = Backoff(initial=float(cfg.reconnect_initial), cap=float(cfg.reconnect_max))
        self.next_try = 0.0
        self.last_error = ""

    async def ensure(self) -> None:
        if self.client.connected:
            return
        now = time.monotonic()
        if now < self.next_try:
            raise _ReadFailed(STATUS_NO_CONNECTION, f"cannot connect to {self.cfg.host}:{self.cfg.port}: {self.last_error}", True)
        try:
            ok = await asyncio.wait_for(self.client.connect(), timeout=float(self.cfg.timeout) + 1.0)
        except (asyncio.TimeoutError, OSError) as exc:
            ok, self.last_error = False, str(exc) or type(exc).__name__
        if not ok:
            self.last_error = self.last_error or await self._why_not()
            self.next_try = time.monotonic() + self.backoff.next_delay()
            raise _ReadFailed(STATUS_NO_CONNECTION, f"cannot connect to {self.cfg.host}:{self.cfg.port}: {self.last_error}", True)
        self.backoff.reset()
        self.last_error = ""
        if self.was_up and self.status is not None:
            self.status.reconnected()
        self.was_up = True

    async def _why_not(self) -> str:
        """pymodbus only says connect() failed; tell a name that does not resolve from a refused/silent port."""
        try:
            await asyncio.wait_for(asyncio.get_running_loop().getaddrinfo(self.cfg.host, self.cfg.port),
                                   timeout=float(self.cfg.timeout))
        except socket.gaierror as exc:
            return f"host name {self.cfg.host!r} does not resolve ({exc.strerror}); check {self.cfg.name}.host"
        except (asyncio.TimeoutError, OSError):  # the name resolves or cannot be told: the generic reason below
            pass
        return f"connection refused or timed out; check {self.cfg.name}.host/port and that the device accepts connections"

    async def read(self, block: Block) -> list:
        await self.ensure()
        c = self.client
        fn = {
            "coils": c.read_coils, "discrete_inputs": c.read_discrete_inputs,
            "holding_registers": c.read_holding_registers, "input_registers": c.read_input_registers,
        }[block.table]
        try:
            # pymodbus bounds each attempt by `timeout`; the outer bound covers a stuck connect inside
            # execute(). asyncio.timeout, not wait_for: no extra task per read.
            async with asyncio.timeout(float(self.cfg.timeout) * (self.cfg.retries + 1) + 1.0):
                rr = await fn(block.start, count=block.count, device_id=block.device_id)
        except (ConnectionException, OSError) as exc:
            raise _ReadFailed(STATUS_NO_CONNECTION, f"connection lost: {exc}", True) from None
        except asyncio.TimeoutError:
            raise _ReadFailed(STATUS_TIMEOUT, f"no response from device {block.device_id} within {self.cfg.timeout:g}s", True) from None
        except ModbusIOException as exc:
            # pymodbus signals a timeout and a mismatched answer (wrong unit or transaction id) the same way.
            if "No response" in str(exc):
                raise _ReadFailed(STATUS_TIMEOUT, f"no response from device {block.device_id} within {self.cfg.timeout:g}s", True) from None
            raise _ReadFailed(STATUS_BAD_RESPONSE, f"bad response from device {block.device_id}: {exc}", False) from None
        except ModbusException as exc:
            raise _ReadFailed(STATUS_BAD_RESPONSE, f"bad response: {exc}", False) from None
        if rr.isError():
            code = int(getattr(rr, "exception_code", 0) or 0)
            return_code = code if code else STATUS_BAD_RESPONSE
            raise _ReadFailed(return_code, f"exception response {code} from device {block.device_id} "
                              f"({block.table} {block.start}+{block.count})", code in _GATEWAY_CODES)
        values = rr.bits if TABLES[block.table][1] else rr.registers
        if len(values) < block.count:
            raise _ReadFailed(STATUS_BAD_RESPONSE, f"short response: {len(values)} of {block.count} values", False)
        return values

    def close(self) -> None:
        self.client.close()


class Source:
    def __init__(self, cfg: Config, ctx: SourceContext):
        self.cfg = cfg
        self.ctx = ctx
        self.filter = ReportFilter(cfg.report, float(cfg.heartbeat), float(cfg.bad_repeat))
        self._names = {d.device_id: d.name or f"device{d.device_id}" for d in cfg.devices}
        self._offline: dict[int, tuple[int, str]] = {}  # device_id -> (status code, message)
        self._last_try: dict[int, float] = {}
        self._block_state: dict[int, int | None] = {}  # id(block) -> last failure code (None: ok)
        self._pool: asyncio.Queue[_Connection] | None = None
        self._conns: list[_Connection] = []
        self._probing: set[int] = set()
        self._probe_tasks: set[asyncio.Task] = set()
        self.counters = {"reads_total": 0, "read_errors_total": 0, "exception_responses_total": 0,
                         "timeouts_total": 0, "cycles_total": 0, "overruns_total": 0}

    # ---- reading ------------------------------------------------------------------------

    async def _read(self, block: Block, conn: _Connection) -> list | _ReadFailed:
        self._last_try[block.device_id] = time.monotonic()
        self.counters["reads_total"] += 1
        try:
            result = await conn.read(block)
        except _ReadFailed as exc:
            self.counters["read_errors_total"] += 1
            if exc.code == STATUS_TIMEOUT:
                self.counters["timeouts_total"] += 1
            elif exc.code < 1000:
                self.counters["exception_responses_total"] += 1
            result = exc
        self._note(block, result)
        return result

    async def _read_pooled(self, block: Block, probe: bool = False) -> list | _ReadFailed | None:
        """Read on a free connection; None if the device went offline while this read waited for one."""
        assert self._pool is not None
        conn = await self._pool.get()
        try:
            # An earlier block of this cycle found the device dead: do not wait out its timeout again.
            if block.device_id in self._offline and not probe:
                return None
            return await self._read(block, conn)
        finally:
            self._pool.put_nowait(conn)

    async def _probe(self, block: Block) -> None:
        """Try one block of an offline device; the poll cycles do not wait for it.

        It borrows a pooled connection rather than opening one more: ``connections``
        is what the device accepts. With ``connections: 1`` the healthy devices
        wait for a probe's timeout once per ``offline_retry``; with more, they keep going.
        """
        try:
            await self._read_pooled(block, probe=True)
        finally:
            self._probing.discard(block.device_id)

    async def _read_all(self, blocks: list[Block]) -> list[list | _ReadFailed]:
        """Read every block of online devices; offline devices are probed in the background.

        A probe of an offline device runs every ``offline_retry`` as a background
        task, so the cycle does not wait for its timeout; once it answers, the
        next cycle reads the device in full.
        """
        now = time.monotonic()
        for b in blocks:
            dev = b.device_id
            if dev in self._offline and dev not in self._probing and now - self._last_try.get(dev, 0.0) >= self.cfg.offline_retry:
                self._probing.add(dev)
                self._last_try[dev] = now
                task = asyncio.create_task(self._probe(b))
                self._probe_tasks.add(task)
                task.add_done_callback(self._probe_tasks.discard)
        live = [b for b in blocks if b.device_id not in self._offline]
        got = await asyncio.gather(*(self._read_pooled(b) for b in live))
        results = {id(b): r for b, r in zip(live, got) if r is not None}
        out = []
        for b in blocks:
            r = results.get(id(b))
            if r is None:  # device offline: repeat its failure without I/O until a probe succeeds
                code, msg = self._offline.get(b.device_id, (STATUS_TIMEOUT, "offline"))
                r = _ReadFailed(code, msg, True)
            out.append(r)
        return out

    def _note(self, block: Block, result: list | _ReadFailed) -> None:
        """Device and block state transitions -> status (errors are counted once per transition)."""
        dev, key = block.device_id, id(block)
        if isinstance(result, _ReadFailed):
            if result.device_down and dev not in self._offline:
                self._offline[dev] = (result.code, str(result))
                self.ctx.status.error(f"{self._names[dev]} offline: {result}")
                self.ctx.log.warning("modbus source %s: %s offline: %s", self.cfg.name, self._names[dev], result)
            elif result.device_down:
                self._offline[dev] = (result.code, str(result))  # keep the latest cause (refused vs timeout)
            if self._block_state.get(key) != result.code and not result.device_down:
                self.ctx.status.error(str(result))
            self._block_state[key] = result.code
        else:
            if dev in self._offline:
                del self._offline[dev]
                self.ctx.log.info("modbus source %s: %s back online", self.cfg.name, self._names[dev])
            self._block_state[key] = None

    async def poll_once(self, blocks: list[Block]) -> int:
        """Read the blocks, emit the cycle's readings in one commit; returns how many were emitted."""
        poll_ts = now_us()
        results = await self._read_all(blocks)
        collected = now_us()
        now = time.monotonic()
        out: list[tuple[int, bytes]] = []
        sent: list[tuple[PointSpec, Any, str, int | None]] = []
        for block, result in zip(blocks, results):
            for p in block.points:
                if isinstance(result, _ReadFailed):
                    value, quality, status = None, BAD, result.code
                else:
                    try:
                        value, quality, status = decode_point(p, result, block.start), GOOD, None
                    except dec.DecodeError:
                        value, quality, status = None, BAD, STATUS_BAD_RESPONSE
                if not self.filter.want(p, value, quality, status, now):
                    continue
                out.append((collected, encode_reading(
                    source=self.cfg.name, protocol="modbus", point=p.name, value=value, quality=quality,
                    status_code=status, source_ts=poll_ts, collected_ts=collected, unit=p.unit, data_type=p.dtype,
                )))
                sent.append((p, value, quality, status))
        if out:
            await emit_with_backpressure(self.ctx, out)
            for p, value, quality, status in sent:
                self.filter.sent(p, value, quality, status, now)
            self.ctx.status.readings(len(out))
        self.counters["cycles_total"] += 1
        self._report_state()
        return len(out)

    def _report_state(self) -> None:
        offline = sorted(self._names[d] for d in self._offline)
        if not offline:
            state, detail = State.RUNNING, f"{len(self.cfg.blocks)} block reads over {len(self._names)} device(s)"
        elif len(offline) == len(self._names):
            state, detail = State.DISCONNECTED, "; ".join(f"{self._names[d]}: {m}" for d, (_, m) in sorted(self._offline.items()))[:300]
        else:
            state, detail = State.DEGRADED, f"offline: {', '.join(offline)}"
        self.ctx.status.update(devices_offline=offline, **self.counters)
        self.ctx.status.set_state(state, detail)

    # ---- lifecycle ----------------------------------------------------------------------

    async def _group_loop(self, interval: float, blocks: list[Block]) -> None:
        next_at = time.monotonic()
        while True:
            await self.poll_once(blocks)
            next_at += interval
            delay = next_at - time.monotonic()
            if delay < 0:
                # Overran (slow device or a blocked spool): skip the missed cycles instead of bursting.
                self.counters["overruns_total"] += 1
                next_at = time.monotonic()
                delay = 0
            await asyncio.sleep(delay)

    async def run(self) -> None:
        cfg = self.cfg
        if logging.getLogger("pymodbus").level == logging.NOTSET:
            # pymodbus logs every timeout at ERROR with a hex dump; we report them through ctx.status instead.
            logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
        self._conns = [_Connection(cfg, i, self.ctx.status) for i in range(cfg.connections)]
        self._pool = asyncio.Queue()
        for c in self._conns:
            self._pool.put_nowait(c)
        groups: dict[float, list[Block]] = {}
        for b in cfg.blocks:
            groups.setdefault(b.interval, []).append(b)
        self.ctx.status.set_state(State.STARTING, f"connecting to {cfg.host}:{cfg.port}")
        try:
            async with asyncio.TaskGroup() as tg:
                for interval, blocks in sorted(groups.items()):
                    tg.create_task(self._group_loop(interval, blocks))
        finally:
            for t in list(self._probe_tasks):
                t.cancel()
            for c in self._conns:
                c.close()


__all__ = [
    "Config", "DeviceConfig", "PointConfig", "STATUS_BAD_RESPONSE", "STATUS_NO_CONNECTION", "STATUS_TIMEOUT",
    "Source", "build_points", "decode_point",
]
