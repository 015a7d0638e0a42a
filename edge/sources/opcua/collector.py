"""The OPC-UA collector: subscriptions -> readings -> ctx.emit, with reconnect and back-fill.

One session at a time. A session: connect (security, login) -> resolve every group's nodes ->
create subscriptions and monitored items in batches, checking every result -> back-fill the
gap from HistoryRead while live notifications are held -> run until the watchdog, the
transport or a subscription status says the connection is gone -> tear down and start over
with backoff (``edge.sources.supervisor``: this class is its session). Our own reconnect (asyncua's auto_reconnect off) so browse paths and folders
are re-resolved and every monitored item is re-checked after a reconnect.

Readings flow: publish callback (maps and de-duplicates) -> in-memory buffer (bounded by
``max_buffered``) -> emitter task (one emit per ``emit_interval`` / ``emit_max``) -> spool.
When the buffer is full the publish callback waits, so asyncua sends no further Publish
request and the server keeps the notifications in its own queues.

Size: ~530 lines, on purpose: the publish hot path, the emitter and the back-fill share one
buffer and one de-duplication state (``_buf``, ``_marks``, ``_last``, ``_ties``, ``_hold``), and
the gap watch (a node's first value after a reconnect decides whether the interval the back-fill
could not fill is a gap: ``history.GapWatch``); opening the
client and reading failures live in ``connect``, the rest of the session in ``resolve``,
``subscribe`` and ``history``.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from asyncua import Client, ua

from edge.fsutil import write_atomic
from edge.sources.context import SourceContext, emit_with_backpressure, raise_if_cancelled
from edge.sources.states import State
from edge.sources.status import now_us
from edge.sources.supervisor import Supervisor, tcp_probe
from edge.encode import encode_gap_marker
from edge.sources.opcua.map import datavalue_body, fingerprint, reading_body, value_key

from . import speedups
from .config import Config
from .connect import classify, describe, endpoint_address, open_client
from .history import Checkpoint, Gap, GapWatch, read_gap, utcnow_us
from .resolve import metadata_snapshot, read_properties, resolve_group
from .security import Pki
from .subscribe import Item, subscribe_group

log = logging.getLogger("edge.sources.opcua")
EMIT_INFLIGHT = 4  # emits handed to the spool writer and not yet committed, at most
_HASHABLE = frozenset((int, float, str, bool, type(None), datetime))


class Source:
    def __init__(self, cfg: Config, ctx: SourceContext):
        speedups.install()
        self.cfg = cfg
        self.ctx = ctx
        self.app_uri = cfg.security.application_uri or f"urn:zerobus-edge:{ctx.appliance_id}"
        base = Path(ctx.data_dir)
        pki_dir = Path(cfg.security.pki_dir)
        self.pki = Pki(pki_dir if pki_dir.is_absolute() else base / pki_dir)
        self.checkpoint = Checkpoint(base / f"{cfg.name}.opcua-checkpoint.json", cfg.endpoint)
        self._items: dict[int, Item] = {}
        self._next_handle = 1
        self._last: dict[str, tuple] = {}  # point -> fingerprint of the newest value taken
        self._ties: dict[str, set] = {}  # point -> fingerprints taken at its newest source time, when several
        self._gaps = GapWatch()  # nodes the back-fill could not fill, until their next value decides; the gaps
        self._seed: dict[str, int] = {}  # point -> checkpointed source time, until a newer value arrives
        self._buf: list[tuple[int, bytes]] = []
        self._marks: list[tuple[str, int | None]] = []  # (point, source_ts) parallel to _buf
        self._have_data = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._hold: list | None = None  # live notifications held while back-filling
        self._held = 0
        self._lost: asyncio.Event | None = None
        self._emitter_task: asyncio.Task | None = None
        self._detail = ""
        self._lost_reason = ""
        self._client: Client | None = None
        self._ckpt_write: asyncio.Future | None = None  # a checkpoint write in its thread
        if cfg.password:
            # asyncua logs every request it sends at DEBUG, the ActivateSession user token (password) included.
            wire = logging.getLogger("asyncua.client.ua_client.UASocketProtocol")
            if wire.getEffectiveLevel() < logging.INFO:
                wire.setLevel(logging.INFO)
            if cfg.security.mode != "SignAndEncrypt":
                log.warning("%s: security mode %s: the password is protected only if the server's user token "
                            "policy encrypts it; use SignAndEncrypt", cfg.name, cfg.security.mode)
        self.stats: dict[str, Any] = {
            "sessions": 0, "subscribed": 0, "failed": 0, "duplicates_dropped": 0, "backfilled": 0,
            "notifications": 0, "publish_fallbacks": 0,
            "backfill_unsupported": 0, "backfill_empty": 0, "gaps_open": 0, "gap_seconds": 0.0,
        }

    # ---------------------------------------------------------------- notifications (hot path)

    async def _on_items(self, sub: Any, items: list) -> None:
        if self._hold is not None:
            self._hold.append(items)
            self._held += len(items)
            while self._held >= self.cfg.max_buffered and self._hold is not None:
                sub.last_publish_at = time.monotonic()
                await asyncio.sleep(0.1)
            return
        self._take(items, now_us(), None)
        while len(self._buf) >= self.cfg.max_buffered:
            # Waiting here stops asyncua's publish loop: the server holds the rest. Keep its
            # stale-subscription watchdog quiet, the slow one is us (the spool), not the server.
            sub.last_publish_at = time.monotonic()
            self._space.clear()
            try:
                await asyncio.wait_for(self._space.wait(), 1.0)
            except asyncio.TimeoutError:  # no space yet: loop to refresh the watchdog and wait again
                pass

    def _take(self, items: list[tuple], collected: int, seen: dict[str, set] | None) -> None:
        """Records (fastpublish.py) -> readings in the buffer, minus values we already have."""
        name = self.cfg.name
        get_item = self._items.get
        last = self._last
        ties = self._ties
        seed = self._seed
        watched = self._gaps.pending
        buf, marks = self._buf, self._marks
        dropped = 0
        for handle, value, vtype, code, source_ts, server_ts in items:
            item = get_item(handle)
            if item is None:
                continue
            fp = (source_ts, code, value if type(value) in _HASHABLE else value_key(value))
            point = item.point
            if watched and point in watched:
                self._first_after_gap(point, source_ts, collected)
            # The same (source time, status, value) again: an initial value re-sent on a new
            # subscription, or a live value the back-fill already delivered.
            prev = last.get(point)
            if prev == fp or (seen is not None and fp in seen.get(point, ())):
                dropped += 1
                continue
            if seed and point in seed:
                # After a restart all we know of a point is the source time of its last committed
                # value (the checkpoint): the same source time again is that value, re-sent.
                if source_ts is not None and source_ts == seed[point]:
                    dropped += 1
                    continue
                del seed[point]
            last[point] = fp
            if prev is not None and prev[0] == source_ts:  # coarse timestamps: several values at one time
                ties.setdefault(point, {prev}).add(fp)
            elif ties and point in ties:
                del ties[point]
            buf.append((collected, reading_body(
                source=name, point=point, value=value, variant_type=vtype, status_code=code, source_ts=source_ts,
                server_ts=server_ts, collected_ts=collected, unit=item.unit, is_array=isinstance(value, (list, tuple)),
            )))
            marks.append((point, source_ts))
        self.stats["notifications"] += len(items)
        self.stats["duplicates_dropped"] += dropped
        if buf:
            self._have_data.set()

    def _publish_fallback(self, exc: Exception) -> None:
        """A publish response our decoder refused and asyncua's decoded (slower, nothing lost)."""
        self.stats["publish_fallbacks"] += 1
        self.ctx.status.update(publish_fallbacks=self.stats["publish_fallbacks"])

    def _on_subscription_status(self, sub: Any, status: ua.StatusCode) -> None:
        if status.is_good():
            return
        msg = f"subscription {sub.subscription_id} status {status.name}"
        log.warning("%s: %s", self.cfg.name, msg)
        if self._lost is not None and not self._lost.is_set():
            self._lost_reason = msg
            self._lost.set()

    # ---------------------------------------------------------------- emitter

    async def _emitter(self) -> None:
        """Buffer -> spool, with up to EMIT_INFLIGHT commits in flight.

        The event loop also decodes publish responses, and a big one holds it for a while;
        waiting for each commit before handing over the next batch made the loop turn the
        round trip, and the spool took ~7k readings/s while 30k/s were decoded. The writer
        runs requests in order, so several outstanding batches commit in the order given.
        """
        cfg, ctx = self.cfg, self.ctx
        next_ckpt = time.monotonic() + cfg.backfill.checkpoint_interval
        inflight: collections.deque[tuple[asyncio.Future, list, int]] = collections.deque()
        try:
            while True:
                raise_if_cancelled()
                if not self._buf and not inflight:
                    try:
                        await asyncio.wait_for(self._have_data.wait(), cfg.backfill.checkpoint_interval)
                    except asyncio.TimeoutError:  # a quiet interval: the checkpoint below still runs
                        pass
                if self._buf and len(inflight) < EMIT_INFLIGHT:
                    if cfg.emit_interval and not inflight:
                        await asyncio.sleep(cfg.emit_interval)
                    while self._buf and len(inflight) < EMIT_INFLIGHT:
                        n = min(len(self._buf), cfg.emit_max)
                        items, marks = self._buf[:n], self._marks[:n]
                        del self._buf[:n]
                        del self._marks[:n]
                        inflight.append((asyncio.ensure_future(emit_with_backpressure(ctx, items)), marks, n))
                    if not self._buf:
                        self._have_data.clear()
                    if len(self._buf) < cfg.max_buffered:
                        self._space.set()
                if inflight:
                    # Here either EMIT_INFLIGHT batches are out or the buffer is empty: wait for the oldest.
                    await asyncio.shield(inflight[0][0])
                    while inflight and inflight[0][0].done():
                        fut, marks, n = inflight.popleft()
                        fut.result()
                        if ctx.status.data.get("state") in (State.BLOCKED, State.DISK_FULL):
                            ctx.status.set_state(State.RUNNING, self._detail)
                        self._committed(marks)
                        ctx.status.readings(n)
                elif not self._buf:
                    self._have_data.clear()
                if time.monotonic() >= next_ckpt:
                    next_ckpt = time.monotonic() + cfg.backfill.checkpoint_interval
                    await self._write_checkpoint()
        except asyncio.CancelledError:
            # Stopping: let the commits in flight finish (bounded) so the checkpoint written on
            # the way out covers them; otherwise the next start would back-fill them again.
            while inflight:
                fut, marks, _ = inflight.popleft()
                try:
                    await asyncio.wait_for(asyncio.shield(fut), 10)
                except (asyncio.TimeoutError, asyncio.CancelledError, Exception):  # noqa: BLE001 - back-filled next start
                    # This batch and the ones after it stay out of the checkpoint; whatever of
                    # them was not committed yet is not written at all (the writer skips a
                    # request cancelled before it ran).
                    for f in (fut, *(f for f, _, _ in inflight)):
                        f.cancel()
                    break
                self._committed(marks)
            raise

    def _committed(self, marks: list[tuple[str, int | None]]) -> None:
        for point, ts in marks:
            if ts is not None:
                self.checkpoint.advance(point, ts)

    async def _write_checkpoint(self) -> None:
        # A write whose caller was cancelled (the emitter, on the way out) goes on in its thread:
        # wait for it first, so run() does not return before the file the next start reads is written.
        if self._ckpt_write is not None:
            await self._await_checkpoint_write()
        if not self.checkpoint.dirty:
            return
        blob = self.checkpoint.snapshot()
        self._ckpt_write = asyncio.ensure_future(asyncio.to_thread(self.checkpoint.write, blob))
        await self._await_checkpoint_write()

    async def _await_checkpoint_write(self) -> None:
        try:
            await asyncio.shield(self._ckpt_write)  # cancelled: the write stays pending for the next call
        except OSError as exc:
            self.checkpoint.dirty = True
            self.ctx.status.error(f"cannot write the back-fill checkpoint {self.checkpoint.path}: {exc.strerror}")
        self._ckpt_write = None

    # ---------------------------------------------------------------- session

    async def run(self) -> None:
        cfg = self.cfg
        self.checkpoint.load()
        self._seed = dict(self.checkpoint.points)
        emitter = self._emitter_task = asyncio.create_task(self._emitter(), name=f"opcua-emit-{cfg.name}")
        supervisor = Supervisor(
            self, self.ctx.status, initial=cfg.reconnect_initial, cap=cfg.reconnect_max, target=cfg.endpoint,
            healthy_after=60.0, min_delay=cfg.reconnect_initial * 0.5, classify=lambda exc, phase: classify(exc, phase, self.cfg, self.pki),
            check=self._check_emitter, log=log, probe=tcp_probe(*endpoint_address(cfg.endpoint)),
        )
        try:
            await supervisor.run()
        finally:
            await self.close()
            emitter.cancel()
            try:
                await emitter
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
            # Whatever was taken but not emitted is lost to the spool; the checkpoint lags it,
            # so the next start back-fills it from history where the server has it.
            await self._write_checkpoint()

    def _check_emitter(self) -> None:
        if self._emitter_task is not None and self._emitter_task.done():
            self._emitter_task.result()  # an emitter crash must not be hidden behind reconnects

    async def connect(self) -> None:
        """Session up to "running": connect, resolve, subscribe every group, back-fill the gap."""
        cfg, ctx = self.cfg, self.ctx
        lost = asyncio.Event()
        self._lost, self._lost_reason = lost, ""

        async def on_lost(exc: Exception) -> None:
            self._lost_reason = f"connection lost ({describe(exc)})"
            lost.set()

        client = self._client = await open_client(self.cfg, self.pki, self.app_uri, self.ctx, on_lost)
        self.stats["sessions"] += 1
        if cfg.load_data_types:
            await client.load_data_type_definitions()
        ctx.status.set_state(State.SUBSCRIBING, cfg.endpoint)
        self._items.clear()
        plans, errors = [], []
        for group in cfg.groups:
            res = await resolve_group(client, group)
            errors += [(f"{group.name}: {what}", why) for what, why in res.errors]
            if (cfg.read_units or cfg.metadata_properties) and res.targets:
                await read_properties(client, res.targets, cfg.unit_properties() if cfg.read_units else [],
                                      cfg.metadata_properties)
            plans.append((group, res.targets))
        if cfg.metadata_properties:
            await self._save_metadata([t for _, targets in plans for t in targets])
        had = [t.point for _, targets in plans for t in targets if t.point in self.checkpoint.points or t.point in self._last]
        backfill = cfg.backfill.enabled and bool(had)
        if backfill:
            self._hold, self._held = [], 0
        elif had:  # no back-fill: whatever changed while we were away is a gap, told by each node's next value
            self._gaps.clear()
            back = utcnow_us()
            for point in had:
                self._gaps.watch(point, self._have_until(point), "backfill_disabled", back)
        total = ok = 0
        notes: list[str] = []
        for group, targets in plans:
            total += len(targets)
            good, failed, note = await subscribe_group(self, client, group, targets)
            ok += good
            errors += failed
            if note:
                notes.append(note)
        self.stats["subscribed"], self.stats["failed"] = ok, len(errors)
        self._report_failures(errors)
        if backfill:
            await self._backfill(client)
        detail = f"{ok} of {total} nodes subscribed on {cfg.endpoint}"
        if errors:
            detail += f"; {len(errors)} failed (see failed_nodes)"
        if notes:
            detail += "; " + "; ".join(notes)
        self._detail = detail
        ctx.status.set_state(State.RUNNING, detail)
        log.info("%s: %s", cfg.name, detail)
        if ok == 0:
            raise RuntimeError(f"no node could be subscribed ({len(errors)} failed)")

    async def _save_metadata(self, targets: list) -> None:
        """The points' metadata (unit and metadata_properties) where an operator and tools can read it."""
        meta = metadata_snapshot(targets)
        path = Path(self.ctx.data_dir) / f"{self.cfg.name}.opcua-metadata.json"
        blob = json.dumps(meta, sort_keys=True, default=str).encode()
        try:
            await asyncio.to_thread(write_atomic, path, blob, 0o644)
        except OSError as exc:
            self.ctx.status.error(f"cannot write the point metadata {path}: {exc.strerror}")
        self.ctx.status.update(metadata_points=len(meta))

    async def serve(self) -> None:
        """Until the watchdog, the transport or a subscription status says the connection is gone."""
        lost = asyncio.create_task(self._lost.wait())
        try:
            # The emitter failing (spool closed, a bug) must end the session loudly, not leave a
            # subscription filling a buffer nobody drains.
            await asyncio.wait({lost, self._emitter_task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
        if self._emitter_task.done():
            self._emitter_task.result()
            raise RuntimeError("the emitter stopped")
        raise ConnectionError(self._lost_reason or "connection lost")

    async def close(self) -> None:
        self._release_hold()
        client, self._client = self._client, None
        if client is None:
            return
        try:
            await asyncio.wait_for(client.disconnect(), self.cfg.timeout)
        except (asyncio.CancelledError, Exception):  # noqa: BLE001 - the connection is gone anyway
            client.disconnect_socket()

    def _report_failures(self, errors: list[tuple[str, str]]) -> None:
        self.ctx.status.update(failed_nodes=[f"{what}: {why}" for what, why in errors[:200]], failed_count=len(errors))
        for what, why in errors[:20]:
            log.warning("%s: node %s not subscribed: %s", self.cfg.name, what, why)
        if len(errors) > 20:
            log.warning("%s: ... and %d more nodes not subscribed", self.cfg.name, len(errors) - 20)
        if errors:
            self.ctx.status.error(f"{len(errors)} nodes not subscribed, first: {errors[0][0]}: {errors[0][1]}")

    # ---------------------------------------------------------------- back-fill

    async def _backfill(self, client: Client) -> None:
        cfg, ctx = self.cfg, self.ctx
        bf = cfg.backfill
        wanted = self._wanted()
        ctx.status.set_state(State.BACKFILLING, f"reading history of {len(wanted)} nodes")
        seen: dict[str, set] = {}
        by_point = {it.point: it for it in self._items.values()}
        name = cfg.name
        # What we hold at each node's start time: history starts there inclusive, and a value at
        # exactly that time is ours only if we have it (several values may share one source time).
        held_at: dict[str, set | list[int]] = {}
        for point, _, ts in wanted:
            last = self._last.get(point)
            if last is not None and last[0] == ts:
                held_at[point] = self._ties.get(point) or {last}
            else:  # known from the checkpoint only: how many values it committed at that time
                held_at[point] = [self.checkpoint.at_newest(point)]

        async def on_values(point: str, dvs: list) -> int:
            taken = 0
            start = self._have_until(point)
            start = -1 if start is None else start
            item = by_point[point]
            collected = now_us()
            s = seen.setdefault(point, set())
            held = held_at.get(point)
            for dv in dvs:
                fp = fingerprint(dv)
                ts = fp[0]
                if ts is None or ts < start or fp in s:
                    continue
                if ts == start and held is not None:
                    if isinstance(held, set):
                        if fp in held:
                            continue
                    elif held[0] > 0:  # history returns values in order: the first n are the committed ones
                        held[0] -= 1
                        continue
                s.add(fp)
                prev = self._last.get(point)
                self._last[point] = fp
                if prev is not None and prev[0] == ts:  # as in _take: what we hold at the newest time
                    self._ties.setdefault(point, {prev}).add(fp)
                else:
                    self._ties.pop(point, None)
                self._buf.append((collected, datavalue_body(dv, source=name, point=point, collected_ts=collected, unit=item.unit)))
                self._marks.append((point, ts))
                self.stats["backfilled"] += 1
                taken += 1
            if self._buf:
                self._have_data.set()
            while len(self._buf) >= cfg.max_buffered:
                self._space.clear()
                await self._space.wait()
            return taken

        back = utcnow_us()
        rep = await read_gap(
            client, wanted, now_us=back, max_gap_s=bf.max_gap, max_values=bf.max_values_per_node,
            nodes_per_request=bf.nodes_per_request, on_values=on_values,
        )
        self._watch_gaps(rep, wanted, back)
        summary = rep.summary()
        self.stats["backfill_unsupported"], self.stats["backfill_empty"] = len(rep.unsupported), len(rep.empty)
        ctx.status.update(last_backfill=summary, backfill_unsupported=len(rep.unsupported), backfill_empty=len(rep.empty))
        (log.warning if rep.unsupported or rep.clamped or rep.empty or rep.failed else log.info)("%s: %s", name, summary)
        if rep.error is not None:
            msg = f"history read failed, the gap since the last run is not back-filled: {describe(rep.error)}"
            log.warning("%s: %s", name, msg)
            ctx.status.error(msg)
        if rep.unsupported:
            ctx.status.error(f"no history on the server for {len(rep.unsupported)} nodes: gap not back-filled")
        self._release_hold(seen)

    def _wanted(self) -> list[tuple[str, Any, int]]:
        """(point, nodeid, source time we hold it up to) of every subscribed node we held before."""
        wanted, known = [], set()
        for it in self._items.values():
            if it.point in known:
                continue
            known.add(it.point)
            ts = self._have_until(it.point)
            if ts is not None:
                wanted.append((it.point, it.nodeid, ts))
        return wanted

    # ---------------------------------------------------------------- gaps

    def _watch_gaps(self, rep: Any, wanted: list[tuple[str, Any, int]], back: int) -> None:
        """Nodes the back-fill did not fill wait for their first value after the reconnect (GapWatch)."""
        gaps = self._gaps
        gaps.clear()
        starts = {p: ts for p, _, ts in wanted}
        for p in rep.clamped:  # older than max_gap: never asked, a gap whatever history holds
            self._open_gap(Gap(p, starts[p], rep.floor_us, "max_gap"), now_us())
        for points, reason in (([p for p, _ in rep.unsupported], "history_unsupported"), (rep.empty, "history_empty"),
                               (rep.failed, "history_failed")):
            for p in points:
                gaps.watch(p, max(starts[p], rep.floor_us), reason, back)
        for p in rep.truncated:  # the rest after max_values_per_node was not read
            ts = self._have_until(p)
            if ts is not None:
                gaps.watch(p, ts, "max_values", back)

    def _first_after_gap(self, point: str, source_ts: int | None, collected: int) -> None:
        gap = self._gaps.first_value(point, source_ts)
        if gap is not None:
            self._open_gap(gap, collected)

    def _open_gap(self, gap: Gap, collected: int) -> None:
        """Record an unrecoverable gap: a marker row in the spool (ahead of the value after it), the status, the log."""
        name = self.cfg.name
        self._buf.append((collected, encode_gap_marker(source=name, protocol="opcua", point=gap.point, start_us=gap.start_us,
                                                       end_us=gap.end_us, reason=gap.reason, collected_ts=collected)))
        self._marks.append((gap.point, None))
        self._have_data.set()
        shown = self._gaps.record(gap)
        self.stats["gaps_open"], self.stats["gap_seconds"] = shown["gaps_open"], shown["gap_seconds"]
        self.ctx.status.update(**shown)
        log.warning("%s: %s lost %.1f s of values (%s), no history to fill them: gap marker written",
                    name, gap.point, gap.seconds, gap.reason)

    def _have_until(self, point: str) -> int | None:
        """Source time up to which we hold the point's values: committed (checkpoint), or taken
        and waiting in the buffer (they commit unless the process dies, and then the checkpoint
        is what the next start goes by)."""
        ckpt = self.checkpoint.points.get(point)
        last = self._last.get(point)
        taken = last[0] if last is not None else None
        if ckpt is None or (taken is not None and taken > ckpt):
            return taken
        return ckpt

    def _release_hold(self, seen: dict[str, set] | None = None) -> None:
        held, self._hold, self._held = self._hold, None, 0
        if held:
            collected = now_us()
            for items in held:
                self._take(items, collected, seen)

