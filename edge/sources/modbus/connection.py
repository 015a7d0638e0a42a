"""One Modbus TCP connection of the collector: connect with backoff, read one block, classify every failure.

Each failure becomes a ``ReadFailed`` with a status code from ``codes`` and a text that says
which device, which registers and what happened. A device that closes (FIN) or resets (RST)
the connection while a request is open is reported at once as ``STATUS_CONNECTION_CLOSED``:
pymodbus itself leaves the request waiting for its timeout and then calls it "no response".
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu.register_message import ReadHoldingRegistersResponse, ReadInputRegistersResponse

from edge.sources.modbus.codes import (
    GATEWAY_CODES, STATUS_BAD_RESPONSE, STATUS_CONNECTION_CLOSED, STATUS_NO_CONNECTION, STATUS_TIMEOUT,
    STATUS_TRANSPORT_ERROR, status_text,
)
from edge.sources.modbus.config import Config
from edge.sources.modbus.plan import TABLES, Block
from edge.sources.status import SourceStatus
from edge.sources.supervisor import Probe, ReconnectPolicy

PROBE_EVERY = 1.0  # seconds between reachability probes while a reconnect backoff runs
HEALTHY_AFTER = 30.0  # seconds a connection stays up before the reconnect backoff starts over (as MQTT's)


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


class ReadFailed(Exception):
    """A block read that gave no values: ``code`` is its status code, ``device_down`` says the device is gone."""

    def __init__(self, code: int, message: str, device_down: bool):
        super().__init__(message)
        self.code = code
        self.device_down = device_down


class _ClosedByDevice(ConnectionException):
    """The connection went away while a request waited for its answer."""


def _where(block: Block) -> str:
    return f"device {block.device_id} {block.table} {block.start}..{block.start + block.count - 1}"


class Connection:
    """One TCP connection; reconnects follow the ``ReconnectPolicy`` every source uses (pymodbus' own is off).

    Not the ``Supervisor`` loop: a Modbus source keeps polling while its connection is down,
    and every poll of a device it cannot reach is a BAD reading (``STATUS_NO_CONNECTION``).
    The policy is the loop's: a jittered delay after a refused or silent connect, reset only once a
    connection stayed up ``healthy_after`` seconds (a device that accepts for a moment between
    refusals keeps backing off). Unlike the loop, a connection the device closed is reopened by
    the next read at once: devices close on a request they dislike, and the block bisect
    (``plan``) reconnects inside one poll cycle to find the register. The probe ends a wait
    early: a connect was just refused or timed out, so an answering port is news.
    """

    def __init__(self, cfg: Config, index: int, status: SourceStatus | None = None, probe: Probe | None = None):
        """``probe()``: does the device's port answer (``supervisor.tcp_probe``)? Checked at most once
        a second while a backoff runs; when it answers, the next read connects at once."""
        self.cfg = cfg
        self.probe = probe
        self.next_probe = 0.0
        self.status = status
        self.was_up = False
        self.in_flight = False
        self.client = AsyncModbusTcpClient(
            cfg.host, port=cfg.port, name=f"{cfg.name}#{index}", timeout=float(cfg.timeout), retries=cfg.retries,
            # 0 disables pymodbus' background reconnect task, whose default cap is 300 s.
            reconnect_delay=0, reconnect_delay_max=0, trace_connect=self._connect_changed,
        )
        self.client.register(_HoldingResponse)
        self.client.register(_InputResponse)
        self.policy = ReconnectPolicy(cfg.reconnect_initial, cfg.reconnect_max, healthy_after=HEALTHY_AFTER)
        self.next_try = 0.0
        self.last_error = ""
        self._fn = {
            "coils": self.client.read_coils, "discrete_inputs": self.client.read_discrete_inputs,
            "holding_registers": self.client.read_holding_registers, "input_registers": self.client.read_input_registers,
        }

    def _connect_changed(self, connected: bool) -> None:
        """pymodbus' connect/disconnect hook: a loss while a request is open ends that request now."""
        future = self.client.ctx.response_future
        if not connected and self.in_flight and not future.done():
            future.set_exception(_ClosedByDevice("the device closed the connection"))

    async def ensure(self) -> None:
        if self.client.connected:
            return
        now = time.monotonic()
        if now < self.next_try and not await self._answers_again(now):
            raise ReadFailed(STATUS_NO_CONNECTION, f"cannot connect to {self.cfg.host}:{self.cfg.port}: {self.last_error}", True)
        try:
            ok = await asyncio.wait_for(self.client.connect(), timeout=float(self.cfg.timeout) + 1.0)
        except (asyncio.TimeoutError, OSError) as exc:
            ok, self.last_error = False, str(exc) or type(exc).__name__
        if not ok:
            self.last_error = self.last_error or await self._why_not()
            self.next_try = time.monotonic() + self.policy.failed()
            raise ReadFailed(STATUS_NO_CONNECTION, f"cannot connect to {self.cfg.host}:{self.cfg.port}: {self.last_error}", True)
        self.policy.connected()  # the backoff starts over only once this connection stayed up healthy_after
        self.last_error = ""
        if self.was_up and self.status is not None:
            self.status.reconnected()
        self.was_up = True

    async def _answers_again(self, now: float) -> bool:
        """Inside a backoff: has the device come back (probed at most every PROBE_EVERY seconds)?"""
        if self.probe is None or now < self.next_probe:
            return False
        self.next_probe = now + PROBE_EVERY
        return await self.probe()

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
        self.in_flight = True
        try:
            # pymodbus bounds each attempt by `timeout` (wait_for on the answer) and, in 3.16, never
            # connects inside a read (not connected -> ConnectionException): no bound of our own, which
            # cost a timer per read. The pool gives each connection to one read at a time.
            rr = await self._fn[block.table](block.start, count=block.count, device_id=block.device_id)
        except _ClosedByDevice:
            raise ReadFailed(STATUS_CONNECTION_CLOSED, f"{status_text(STATUS_CONNECTION_CLOSED)} on a read of "
                             f"{_where(block)} (FIN or RST before an answer)", False) from None
        except ConnectionException as exc:
            raise ReadFailed(STATUS_NO_CONNECTION, f"connection lost: {exc}", True) from None
        except OSError as exc:
            self.client.close()  # the socket is in an unknown state: the next read connects afresh
            raise ReadFailed(STATUS_TRANSPORT_ERROR, f"{status_text(STATUS_TRANSPORT_ERROR)} on {_where(block)}: "
                             f"{type(exc).__name__}: {exc}", False) from None
        except asyncio.TimeoutError:  # not raised by pymodbus 3.16 (it says ModbusIOException), kept for safety
            raise self._timeout(block) from None
        except ModbusIOException as exc:
            # pymodbus signals a timeout and a mismatched answer (wrong unit or transaction id) the same way.
            if "No response" in str(exc):
                raise self._timeout(block) from None
            raise ReadFailed(STATUS_BAD_RESPONSE, f"bad response from device {block.device_id}: {exc}", False) from None
        except ModbusException as exc:
            raise ReadFailed(STATUS_BAD_RESPONSE, f"bad response: {exc}", False) from None
        finally:
            self.in_flight = False
        if rr.isError():
            code = int(getattr(rr, "exception_code", 0) or 0)
            raise ReadFailed(code or STATUS_BAD_RESPONSE, f"{status_text(code)} from {_where(block)}", code in GATEWAY_CODES)
        values = rr.bits if TABLES[block.table][1] else rr.registers
        if len(values) < block.count:
            raise ReadFailed(STATUS_BAD_RESPONSE, f"short response: {len(values)} of {block.count} values", False)
        return values

    def _timeout(self, block: Block) -> ReadFailed:
        return ReadFailed(STATUS_TIMEOUT, f"no response from device {block.device_id} within {self.cfg.timeout:g}s "
                          f"({block.table} {block.start}..{block.start + block.count - 1})", True)

    def close(self) -> None:
        self.client.close()


__all__ = ["Connection", "ReadFailed"]
