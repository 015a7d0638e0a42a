"""Modbus TCP collector: polls register maps in block reads and spools every poll cycle.

One source = one TCP endpoint (a PLC or a gateway) with one or more device
(unit) ids behind it. Options and the address notation are documented in
``edge/sources/modbus/README.md`` and validated in ``config``; pure parts live in ``decode`` (bytes
<-> values), ``plan`` (addresses, block planning, the learned read plan, report-by-exception) and
``codes`` (status codes); one connection's reads and their failures are ``connection``.

Failures become visible data (status codes: ``codes``, the table in the README):

- a Modbus exception response (the device answered "illegal data address",
  "device busy", ...): ``quality=BAD`` with ``status_code`` = the exception code (1..11);
- no answer (timeout) 1001, no TCP connection 1002, a malformed answer 1003, the
  device closed the connection on the request 1004, another socket error 1005.

A failure that concerns some register rather than the device (exception 2/3/4/8, a
connection closed on that request, or a timeout while the device answers its other
reads) is isolated: the read is bisected (``plan.ReadPlan``, at most ``isolate_reads``
extra reads per cycle and one of them timing out), the good parts are read directly from
then on, and only the points on the bad register(s) stay BAD, re-probed every
``reprobe_interval``. A device that answers nothing (two timeouts in a cycle and no answer,
no connection, gateway exception 10/11) is listed in ``ctx.status["devices_offline"]``
and its blocks are only retried every ``offline_retry`` seconds, so one dead unit id
does not stall the others.

Modbus carries no timestamps: ``source_ts`` is the wall-clock time the poll
cycle started, ``collected_ts`` the time its last response arrived.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

from edge.encode import BAD, GOOD, encode_reading
from edge.sources.modbus import decode as dec
from edge.sources.context import SourceContext, emit_with_backpressure, raise_if_cancelled
from edge.sources.states import State
from edge.sources.supervisor import tcp_probe
from edge.sources.status import now_us
from edge.sources.modbus.codes import (
    STATUS_BAD_RESPONSE, STATUS_CONNECTION_CLOSED, STATUS_NO_CONNECTION, STATUS_TIMEOUT, STATUS_TRANSPORT_ERROR,
    status_text,
)
from edge.sources.modbus.config import Config, DeviceConfig, PointConfig, build_points
from edge.sources.modbus.connection import Connection, ReadFailed
from edge.sources.modbus.plan import BAD_PART, GOOD_PART, Block, PointSpec, ReadPlan, ReportFilter, Segment, isolatable


def decode_point(p: PointSpec, values: list, block_start: int) -> Any:
    """One point's engineering value from its block's registers (or bits)."""
    i = p.address - block_start
    if p.is_bit_table:
        return bool(values[i])
    raw = dec.decode(values[i:i + p.count], p.dtype, p.order, bit=p.bit)
    return dec.scale_value(raw, p.scale, p.offset)


class _Cycle:
    """What one poll cycle saw of each device: a timeout is the device's only if it answered nothing."""

    __slots__ = ("answered", "timed_out")

    def __init__(self) -> None:
        self.answered: set[int] = set()
        self.timed_out: set[int] = set()


class Source:
    def __init__(self, cfg: Config, ctx: SourceContext):
        self.cfg = cfg
        self.ctx = ctx
        self.filter = ReportFilter(cfg.report, float(cfg.heartbeat), float(cfg.bad_repeat))
        self.plan = ReadPlan(cfg.blocks, float(cfg.reprobe_interval))
        self._names = {d.device_id: d.name or f"device{d.device_id}" for d in cfg.devices}
        self._offline: dict[int, tuple[int, str]] = {}  # device_id -> (status code, message)
        self._last_try: dict[int, float] = {}
        self._read_state: dict[tuple[int, str, int, int], int | None] = {}  # read -> last failure code (None: ok)
        self._pool: asyncio.Queue[Connection] | None = None
        self._conns: list[Connection] = []
        self._probing: set[int] = set()
        self._probe_turn: dict[int, int] = {}  # device -> which of its blocks the next probe reads
        self._probe_tasks: set[asyncio.Task] = set()
        self._isolated: tuple[int, list[str]] = (-1, [])  # (plan.changes, the bad parts as text)
        self.counters = {"reads_total": 0, "read_errors_total": 0, "exception_responses_total": 0,
                         "timeouts_total": 0, "connections_closed_total": 0, "isolation_reads_total": 0,
                         "cycles_total": 0, "overruns_total": 0}

    # ---- reading ------------------------------------------------------------------------

    async def _read(self, block: Block, conn: Connection, cycle: _Cycle) -> list | ReadFailed:
        self._last_try[block.device_id] = time.monotonic()
        self.counters["reads_total"] += 1
        try:
            result = await conn.read(block)
        except ReadFailed as exc:
            self.counters["read_errors_total"] += 1
            if exc.code == STATUS_TIMEOUT:
                self.counters["timeouts_total"] += 1
            elif exc.code == STATUS_CONNECTION_CLOSED:
                self.counters["connections_closed_total"] += 1
            elif exc.code < 1000:
                self.counters["exception_responses_total"] += 1
            result = exc
        self._note(block, result, cycle)
        return result

    async def _read_pooled(self, block: Block, cycle: _Cycle, probe: bool = False) -> list | ReadFailed | None:
        """Read on a free connection; None if the device went offline while this read waited for one."""
        assert self._pool is not None
        conn = await self._pool.get()
        try:
            # An earlier read of this cycle found the device dead: do not wait out its timeout again.
            if block.device_id in self._offline and not probe:
                return None
            return await self._read(block, conn, cycle)
        finally:
            self._pool.put_nowait(conn)

    async def _probe(self, block: Block) -> None:
        """Try one read of an offline device; the poll cycles do not wait for it.

        It borrows a pooled connection rather than opening one more: ``connections``
        is what the device accepts. With ``connections: 1`` the healthy devices
        wait for a probe's timeout once per ``offline_retry``; with more, they keep going.
        """
        try:
            await self._read_pooled(block, _Cycle(), probe=True)
        finally:
            self._probing.discard(block.device_id)

    def _start_probes(self, blocks: list[Block], now: float) -> None:
        """Every ``offline_retry``, one background read of each offline device, a different block each time.

        Taking turns matters: a device that does not answer one block must not stay offline
        because the probe keeps asking for that block.
        """
        if not self._offline:
            return
        by_dev: dict[int, list[Block]] = {}
        for b in blocks:
            by_dev.setdefault(b.device_id, []).append(b)
        for dev, dev_blocks in by_dev.items():
            if dev not in self._offline or dev in self._probing or now - self._last_try.get(dev, 0.0) < self.cfg.offline_retry:
                continue
            turn = self._probe_turn.get(dev, 0)
            self._probe_turn[dev] = turn + 1
            block = dev_blocks[turn % len(dev_blocks)]
            parts = [s.block for s in self.plan.parts(block) if s.state == GOOD_PART] or [block]
            self._probing.add(dev)
            self._last_try[dev] = now
            task = asyncio.create_task(self._probe(parts[0]))
            self._probe_tasks.add(task)
            task.add_done_callback(self._probe_tasks.discard)

    async def _read_all(self, blocks: list[Block]) -> dict[int, list | ReadFailed]:
        """Read the planned parts of every block of online devices -> {id(segment): values or failure}.

        Offline devices are probed in the background (``_start_probes``). Then, within
        ``isolate_reads``, the halves of reads that failed on some register are read
        (``_isolate``).
        """
        now = time.monotonic()
        self._start_probes(blocks, now)
        cycle = _Cycle()
        todo = [(b, s) for b in blocks if b.device_id not in self._offline for s in self.plan.due(b, now)]
        got = await self._read_each([s.block for _, s in todo], cycle)
        for dev in cycle.timed_out - cycle.answered:  # its only read timed out: nothing says the device is alive
            if dev not in self._offline:
                self._set_offline(dev, STATUS_TIMEOUT, f"no response from device {dev} within {self.cfg.timeout:g}s")
        results: dict[int, list | ReadFailed] = {}
        for (b, s), r in zip(todo, got):
            if r is not None:
                results[id(s)] = r
                self._learn(b, s, r, cycle, now)
        if self.cfg.isolate_reads and (self.plan.splitting or any(isinstance(r, ReadFailed) for r in got)):
            await self._isolate(blocks, cycle, results, now)
        return results

    async def _read_each(self, reads: list[Block], cycle: _Cycle) -> list[list | ReadFailed | None]:
        """Every read over the pooled connections, in order, by one worker per connection.

        Not one task per read (``gather`` over the reads): a task, its wake-ups and a wait on the
        pool for each of them cost more CPU than the rest of the collector's part of a read.
        """
        out: list[list | ReadFailed | None] = [None] * len(reads)
        todo = iter(range(len(reads)))

        async def worker() -> None:
            for i in todo:  # shared: each worker takes the next read when its last one is done
                out[i] = await self._read_pooled(reads[i], cycle)
                raise_if_cancelled()

        workers = min(len(self._conns), len(reads))
        if workers <= 1:
            await worker()
        else:
            await asyncio.gather(*(worker() for _ in range(workers)))
        return out

    def _learn(self, block: Block, seg: Segment, result: list | ReadFailed, cycle: _Cycle, now: float) -> list[Segment]:
        """Feed one read's outcome to the read plan; returns the halves to read if it was split."""
        dev = block.device_id
        if not isinstance(result, ReadFailed):
            if seg.state == BAD_PART:
                self.ctx.log.info("modbus source %s: %s %s %d..%d reads again", self.cfg.name, self._names[dev],
                                  block.table, seg.block.start, seg.block.start + seg.block.count - 1)
            return self.plan.record(block, seg, None, False, now)
        isolate = (dev not in self._offline and self.cfg.isolate_reads > 0
                   and isolatable(result.code, dev in cycle.answered))
        was = seg.state
        new = self.plan.record(block, seg, result.code, isolate, now, conclusive=dev in cycle.answered)
        if seg.state == BAD_PART and was != BAD_PART:
            names = ", ".join(p.name for p in seg.block.points)
            msg = (f"{self._names[dev]} {block.table} {seg.block.start}..{seg.block.start + seg.block.count - 1} "
                   f"({names}): {status_text(result.code)}; isolated, the rest is read around it "
                   f"(re-probed every {self.cfg.reprobe_interval:g}s)")
            self.ctx.status.error(msg)
            self.ctx.log.warning("modbus source %s: %s", self.cfg.name, msg)
        return new

    async def _isolate(self, blocks: list[Block], cycle: _Cycle, results: dict[int, list | ReadFailed], now: float) -> None:
        """Bisect failed reads, depth first, within ``isolate_reads`` reads and one timeout per cycle."""
        pending = [(b, s) for b in blocks for s in self.plan.pending(b)]
        pending.sort(key=lambda bs: bs[1].code == STATUS_TIMEOUT)  # the cheap ones (an answer, a close) first
        queue = deque(pending)
        budget = self.cfg.isolate_reads
        while queue and budget > 0:
            b, s = queue.popleft()
            if b.device_id in self._offline:
                continue
            r = await self._read_pooled(s.block, cycle)
            if r is None:
                continue
            budget -= 1
            self.counters["isolation_reads_total"] += 1
            results[id(s)] = r
            queue.extendleft((b, n) for n in reversed(self._learn(b, s, r, cycle, now)))
            if isinstance(r, ReadFailed) and r.code == STATUS_TIMEOUT:
                break

    def _set_offline(self, dev: int, code: int, message: str) -> None:
        if dev not in self._offline:
            self.ctx.status.error(f"{self._names[dev]} offline: {message}")
            self.ctx.log.warning("modbus source %s: %s offline: %s", self.cfg.name, self._names[dev], message)
        self._offline[dev] = (code, message)  # keep the latest cause (refused vs timeout)

    def _note(self, block: Block, result: list | ReadFailed, cycle: _Cycle) -> None:
        """Device and read state transitions -> status (errors are counted once per transition)."""
        dev, key = block.device_id, (block.device_id, block.table, block.start, block.count)
        if not isinstance(result, ReadFailed) or (result.code < 1000 and not result.device_down):
            cycle.answered.add(dev)  # values, or an exception response: the device is there and talking
        if not isinstance(result, ReadFailed):
            if dev in self._offline:
                del self._offline[dev]
                self.ctx.log.info("modbus source %s: %s back online", self.cfg.name, self._names[dev])
            self._read_state[key] = None
            return
        if result.code == STATUS_TIMEOUT and (dev in cycle.answered or dev not in cycle.timed_out):
            # The device answered another read, or this is its first timeout of the cycle: maybe one
            # block it cannot serve, not a dead device. A second timeout without an answer decides.
            cycle.timed_out.add(dev)
        elif result.device_down:
            self._set_offline(dev, result.code, str(result))
        if self._read_state.get(key) != result.code and dev not in self._offline:
            self.ctx.status.error(str(result))
        self._read_state[key] = result.code

    def _point_readings(self, block: Block, results: dict[int, list | ReadFailed]):
        """(point, value, quality, status) of every point of the block, from the parts that cover it."""
        offline = self._offline.get(block.device_id)
        for seg in self.plan.parts(block):
            r = results.get(id(seg))
            if r is None:  # not read: an offline device, a bad part not due, a half the budget did not reach
                code = offline[0] if offline else (seg.code or STATUS_TIMEOUT)
                for p in seg.block.points:
                    yield p, None, BAD, code
            elif isinstance(r, ReadFailed):
                for p in seg.block.points:
                    yield p, None, BAD, r.code
            else:
                start = seg.block.start
                for p in seg.block.points:
                    try:
                        yield p, decode_point(p, r, start), GOOD, None
                    except dec.DecodeError:
                        yield p, None, BAD, STATUS_BAD_RESPONSE

    async def poll_once(self, blocks: list[Block]) -> int:
        """Read the blocks, emit the cycle's readings in one commit; returns how many were emitted."""
        poll_ts = now_us()
        results = await self._read_all(blocks)
        collected = now_us()
        now = time.monotonic()
        out: list[tuple[int, bytes]] = []
        sent: list[tuple[PointSpec, Any, str, int | None]] = []
        for block in blocks:
            for p, value, quality, status in self._point_readings(block, results):
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
        if self.plan.changes != self._isolated[0]:  # the list is rebuilt only when the plan changed
            self._isolated = (self.plan.changes, [
                f"{self._names[b.device_id]} {b.table} {s.block.start}..{s.block.start + s.block.count - 1}: "
                f"{status_text(s.code or 0)}" for b in self.cfg.blocks for s in self.plan.bad(b)])
        isolated = self._isolated[1]
        if not offline:
            state, detail = State.RUNNING, f"{len(self.cfg.blocks)} block reads over {len(self._names)} device(s)"
            if isolated:
                detail += f"; {len(isolated)} register span(s) isolated as BAD"
        elif len(offline) == len(self._names):
            state, detail = State.DISCONNECTED, "; ".join(f"{self._names[d]}: {m}" for d, (_, m) in sorted(self._offline.items()))[:300]
        else:
            state, detail = State.DEGRADED, f"offline: {', '.join(offline)}"
        self.ctx.status.update(devices_offline=offline, isolated=isolated[:20], **self.counters)
        self.ctx.status.set_state(state, detail)

    # ---- lifecycle ----------------------------------------------------------------------

    async def _group_loop(self, interval: float, blocks: list[Block]) -> None:
        next_at = time.monotonic()
        while True:
            await self.poll_once(blocks)
            raise_if_cancelled()
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
        # The device's port answering again ends a connection's reconnect backoff early.
        self._conns = [Connection(cfg, i, self.ctx.status, tcp_probe(cfg.host, cfg.port, min(1.0, float(cfg.timeout))))
                       for i in range(cfg.connections)]
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
    "Config", "DeviceConfig", "PointConfig", "STATUS_BAD_RESPONSE", "STATUS_CONNECTION_CLOSED", "STATUS_NO_CONNECTION",
    "STATUS_TIMEOUT", "STATUS_TRANSPORT_ERROR", "Source", "build_points", "decode_point",
]
