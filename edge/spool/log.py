"""The spool log: append, the budget and its drops, loss markers, expiry, peek and ack.

A mixin of ``Spool`` (edge/spool/core.py owns the connection and the transaction);
it only touches ``readings``, ``loss_markers`` and the counters in ``_meta``.
"""

from __future__ import annotations

import functools
import itertools
import logging
import time
from operator import itemgetter
from typing import Iterator, Sequence

from edge import budget
from edge.encode import encode_loss_marker
from edge.spool import common
from edge.spool.common import AppendResult, BadRequest, SpoolError, SpoolFull
from edge.spool.queries import _peek

log = logging.getLogger("edge.spool")

INSERT_ROWS = 1000  # rows per multi-row INSERT (2 parameters each; SQLite allows 32766)
EXPIRE_CHUNK = 50_000
EXPIRE_CHUNKS_PER_CALL = 10
_MARKER_RESERVE = 64 + budget.ROW_OVERHEAD  # room for the marker a drop writes
DROP_LOG_EVERY_S = 60.0

_body = itemgetter(1)


@functools.lru_cache(maxsize=128)
def _insert_sql(rows: int) -> str:
    return "INSERT INTO readings(ts, body) VALUES " + ",".join(["(?,?)"] * rows)


class SpoolLog:
    """Append / drops / markers / ack. State lives on the ``Spool`` it is mixed into."""

    _drop_log: dict[str, tuple[float | None, int]]  # reason -> (last logged, readings dropped since)

    def append(self, items: Sequence[tuple[int, bytes]], *, may_drop_batch: bool = True) -> AppendResult:
        """Store ``(collected_ts_us, body)`` items in one transaction; seqs are contiguous.

        ``may_drop_batch=False``: a batch that would be dropped (``drop_newest``, or
        ``drop_oldest`` with nothing left to drop) raises SpoolFull instead, having
        written nothing (no seq, no marker, no drop count): for a caller that keeps
        its data, like an operator's dead-letter retry."""
        if not isinstance(items, (list, tuple)):
            items = list(items)
        n = len(items)
        if n == 0:
            raise BadRequest("append of an empty batch")
        try:
            incoming = budget.batch_bytes(sum(map(len, map(_body, items))), n)
        except (TypeError, IndexError) as e:
            raise BadRequest(f"items must be (collected_ts_us: int, body: bytes) pairs: {e}") from e
        with self._tx():
            m = self._meta
            dropped = 0
            limit = self._readings_budget()
            fits = budget.fits(m.stored_bytes, incoming, limit)
            self.disk_bound = not fits and m.stored_bytes + incoming <= self.max_bytes - m.side_bytes
            if not fits:
                self._flush_pending()  # drops and markers work on the table as it stands
                cause = "disk_low" if self.disk_bound else "budget"
                if self.when_full == "block" or (self.when_full == "drop_newest" and not may_drop_batch):
                    raise SpoolFull(cause, f"spool full ({cause}): {m.stored_bytes} of {limit} bytes used, "
                                           f"batch needs {incoming}")
                if self.when_full == "drop_oldest":
                    dropped = self._drop_oldest(m.stored_bytes + incoming + _MARKER_RESERVE - limit)
                if self.when_full == "drop_newest" or dropped < 0:
                    if not may_drop_batch:
                        raise SpoolFull(cause, f"spool full ({cause}): nothing left to drop for {incoming} bytes")
                    return self._drop_batch(items, n)
            first = m.next_seq
            last = first + n - 1
            self._seq.ensure_above(last + 1)
            self._insert(first, items)
            m.next_seq = last + 1
            m.stored_rows += n
            m.stored_bytes += incoming
            m.appended_total += n
            self._dirty = True
        return AppendResult(first, last, True, dropped)

    def has_room(self, nbytes: int = 0) -> bool:
        """Would ``nbytes`` more be taken right now (for waiters after a SpoolFull)? Under a drop
        policy always: the policy makes the room (a SpoolFull there was a full disk, retried)."""
        if self.when_full != "block":
            return True
        return budget.fits(self._meta.stored_bytes, nbytes + budget.ROW_OVERHEAD, self._readings_budget())

    def recheck_disk(self) -> bool:
        """Re-evaluate ``disk_bound`` without an append (space may come back while no source writes)."""
        if self.disk_bound:
            m = self._meta
            limit = self._readings_budget()
            self.disk_bound = (limit < self.max_bytes - m.side_bytes
                               and not budget.fits(m.stored_bytes, _MARKER_RESERVE, limit))
        return self.disk_bound

    def _readings_budget(self) -> int:
        """What readings may hold now: max_bytes less the side tables' bytes, capped by the free disk
        (a released ballast's room is not for growth: it is for drops and checkpoints)."""
        m = self._meta
        cap = self.max_bytes - m.side_bytes
        free = common._disk_free(self.path.parent)
        if free is not None:
            free -= self._ballast.missing_bytes
            if free - self.min_free_bytes < cap - m.stored_bytes:
                # The disk binds: pages the file already holds free are room too (dropped rows
                # leave them), or every drop_oldest round would shrink the spool by a row.
                free += self._conn.execute("PRAGMA freelist_count").fetchone()[0] * self._page_size
        return budget.effective_budget(cap, m.stored_bytes, free, self.min_free_bytes)

    def _insert(self, first: int, items: Sequence[tuple[int, bytes]]) -> None:
        """Queue rows for the table; consecutive appends of one group go in with one executemany."""
        if self._pending and self._pending_last + 1 != first:
            self._flush_pending()
        if not self._pending:
            self._pending_first = first
        self._pending.append(items)
        self._pending_last = first + len(items) - 1

    def _flush_pending(self) -> None:
        if not self._pending:
            return
        batches, first, last = self._pending, self._pending_first, self._pending_last
        self._pending = []
        conn = self._conn
        conn.execute("INSERT INTO readings(seq, ts, body) VALUES (?, ?, ?)", (first, *batches[0][0]))
        if last > first:
            # SQLite gives a row without a rowid max(rowid) + 1; seq `first` is
            # the table's maximum now, so the rest land contiguously (checked
            # right below). Multi-row INSERTs, not executemany: sqlite3 releases
            # the GIL around every statement step, i.e. per row with executemany,
            # and each release hands the GIL to a busy collector thread, which the
            # writer then waits for. One step per INSERT_ROWS rows instead (MQTT
            # collector before its burst reads: 14.3-14.9k -> 16.0-16.5k msg/s).
            flat = list(itertools.chain.from_iterable(
                itertools.chain(itertools.islice(batches[0], 1, None), *batches[1:])))
            rows = len(flat) // 2
            whole = rows - rows % INSERT_ROWS
            if whole:
                sql = _insert_sql(INSERT_ROWS)
                step = 2 * INSERT_ROWS
                for i in range(0, 2 * whole, step):
                    conn.execute(sql, flat[i:i + step])
            if rows > whole:
                conn.execute(_insert_sql(rows - whole), flat[2 * whole:])
            got = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
            if got != last:
                raise SpoolError(f"seq assignment went wrong: expected last seq {last}, got {got}")

    def _drop_batch(self, items: Sequence[tuple[int, bytes]], n: int) -> AppendResult:
        m = self._meta
        first = m.next_seq
        last = first + n - 1
        self._seq.ensure_above(last + 1)
        m.next_seq = last + 1
        m.appended_total += n
        self._write_marker(first, last, "drop_newest", int(items[0][0]), extend=True)
        self._count_drop("drop_newest", n)
        self._dirty = True
        log.warning("spool full: dropped incoming batch seq %d..%d (%d readings)", first, last, n)
        return AppendResult(first, last, False, n)

    def _bound(self) -> int:
        return max(self._meta.delivered_seq, self._protected)

    def _drop_oldest(self, need: int) -> int:
        """Drop the oldest unprotected rows freeing ``need`` bytes; -1 when even all of them would not do."""
        bound = self._bound()
        cur = self._conn.execute(
            "SELECT seq, length(body) + ? FROM readings WHERE seq > ? ORDER BY seq", (budget.ROW_OVERHEAD, bound)
        )
        chosen: list[tuple[int, int]] = []

        def candidates() -> Iterator[tuple[int, int]]:
            for row in cur:
                chosen.append(row)
                yield row

        _count, freed = budget.rows_to_drop(candidates(), need)
        cur.close()
        if freed < need or not chosen:
            return -1
        return self._drop_rows(chosen, "drop_oldest")

    def _drop_rows(self, chosen: list[tuple[int, int]], reason: str) -> int:
        """Delete the contiguous oldest rows ``chosen`` and cover them with one marker at the first one.

        Markers among them are absorbed into the new marker (a marker of the same
        reason at the head is thereby extended); what they had counted stays
        counted in ``meta``. Returns the number of readings dropped."""
        first, last_row = chosen[0][0], chosen[-1][0]
        markers = self._conn.execute(
            "SELECT seq, to_seq, reason, ts FROM loss_markers WHERE seq BETWEEN ? AND ?", (first, last_row)
        ).fetchall()
        by_seq = {s: (to, r, ts) for s, to, r, ts in markers}
        head_ts = by_seq[first][2] if first in by_seq else None
        if head_ts is None:
            head_ts = self._conn.execute("SELECT ts FROM readings WHERE seq = ?", (first,)).fetchone()[0]
        to_seq = by_seq[last_row][0] if last_row in by_seq else last_row
        readings_dropped = len(chosen) - len(by_seq)
        self._conn.execute("DELETE FROM readings WHERE seq BETWEEN ? AND ?", (first, last_row))
        self._conn.execute("DELETE FROM loss_markers WHERE seq BETWEEN ? AND ?", (first, last_row))
        m = self._meta
        m.stored_rows -= len(chosen)
        m.stored_bytes -= sum(b for _s, b in chosen)
        self._write_marker(first, to_seq, reason, head_ts, extend=False, merged=first in by_seq)
        self._count_drop(reason, readings_dropped)
        self.freed += 1
        self._dirty = True
        self._log_drop(reason, readings_dropped, first, to_seq)
        return readings_dropped

    def _log_drop(self, reason: str, n: int, first: int, to_seq: int) -> None:
        """A drop is logged as it happens, then at most once per DROP_LOG_EVERY_S with the count since
        (a full spool drops on every append: a line each would bury the log)."""
        now = time.monotonic()
        at, since = self._drop_log.get(reason, (None, 0))
        if at is not None and now - at < DROP_LOG_EVERY_S:
            self._drop_log[reason] = (at, since + n)
            return
        self._drop_log[reason] = (now, 0)
        if since:
            log.warning("spool %s: dropped %d readings in the last %.0fs, seq %d..%d now covered by a loss marker",
                        reason, since + n, now - at, first, to_seq)
        else:
            log.warning("spool %s: dropped %d readings, seq %d..%d now covered by a loss marker",
                        reason, n, first, to_seq)

    def _write_marker(self, from_seq: int, to_seq: int, reason: str, ts: int, *, extend: bool,
                      merged: bool = False) -> None:
        self._flush_pending()
        conn = self._conn
        m = self._meta
        if extend:
            newest = conn.execute(
                "SELECT seq, to_seq, reason, ts FROM loss_markers ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            if (newest and newest[1] == from_seq - 1 and newest[2] == reason and newest[0] > self._bound()):
                from_seq, ts = newest[0], newest[3]
                old_len = conn.execute("SELECT length(body) FROM readings WHERE seq = ?", (from_seq,)).fetchone()[0]
                body = encode_loss_marker(from_seq, to_seq, reason, ts)
                conn.execute("UPDATE readings SET body = ? WHERE seq = ?", (body, from_seq))
                conn.execute("UPDATE loss_markers SET to_seq = ? WHERE seq = ?", (to_seq, from_seq))
                m.stored_bytes += len(body) - old_len
                self._dirty = True
                return
        body = encode_loss_marker(from_seq, to_seq, reason, ts)
        conn.execute("INSERT INTO readings(seq, ts, body) VALUES (?, ?, ?)", (from_seq, ts, body))
        conn.execute("INSERT INTO loss_markers(seq, to_seq, reason, ts) VALUES (?, ?, ?, ?)",
                     (from_seq, to_seq, reason, ts))
        m.stored_rows += 1
        m.stored_bytes += len(body) + budget.ROW_OVERHEAD
        if not merged:
            m.markers_written += 1
        self._dirty = True

    def _count_drop(self, cause: str, n: int) -> None:
        if n:
            self._meta.dropped[cause] = self._meta.dropped.get(cause, 0) + n
            self._dirty = True

    def set_protected(self, upto_seq: int) -> None:
        """The forwarder's in-flight window ends at ``upto_seq``: drops and expiry never touch seq <= it."""
        self._protected = int(upto_seq)

    def expire(self, now_us: int | None = None) -> int:
        """Drop the oldest unprotected rows older than ``max_age_s`` (reason ``expired``)."""
        if not self.max_age_s:
            return 0
        cutoff = (now_us or common._now_us()) - int(self.max_age_s * 1e6)
        dropped = 0
        # Chunks, each its own transaction, a bounded number per call: a huge
        # expired backlog neither balloons memory nor stalls appends for long.
        for _ in range(EXPIRE_CHUNKS_PER_CALL):
            with self._tx():
                self._flush_pending()
                rows = self._conn.execute(
                    "SELECT seq, ts, length(body) + ? FROM readings WHERE seq > ? ORDER BY seq LIMIT ?",
                    (budget.ROW_OVERHEAD, self._bound(), EXPIRE_CHUNK),
                ).fetchall()
                n = budget.expired_prefix([(seq, ts) for seq, ts, _b in rows], cutoff)
                chosen = [(seq, nbytes) for seq, _ts, nbytes in rows[:n]]
                # A lone expired marker already says what it should; rewriting it gains nothing.
                if not chosen or (len(chosen) == 1 and self._conn.execute(
                        "SELECT 1 FROM loss_markers WHERE seq = ? AND reason = 'expired'", (chosen[0][0],)
                ).fetchone()):
                    break
                dropped += self._drop_rows(chosen, "expired")
            if n < len(rows) or len(rows) < EXPIRE_CHUNK:
                break
        return dropped

    # ------------------------------------------------------------ drain

    def peek(self, after_seq: int, max_records: int = 1000, max_bytes: int | None = None) -> list[tuple[int, bytes]]:
        self._flush_pending()
        return _peek(self._conn, after_seq, max_records, max_bytes)

    def watermark(self) -> int:
        return self._meta.delivered_seq

    @property
    def next_seq(self) -> int:
        return self._meta.next_seq

    def ack(self, upto_seq: int) -> int:
        """Everything <= ``upto_seq`` reached ZeroBus: delete it and move the watermark. Idempotent."""
        m = self._meta
        upto_seq = int(upto_seq)
        if upto_seq <= m.delivered_seq:
            return m.delivered_seq
        if upto_seq >= m.next_seq:
            raise BadRequest(f"ack({upto_seq}) beyond the last assigned seq {m.next_seq - 1}")
        with self._tx():
            self._flush_pending()
            conn = self._conn
            rows, nbytes = conn.execute(
                "SELECT count(*), coalesce(sum(length(body)), 0) FROM readings WHERE seq <= ?", (upto_seq,)
            ).fetchone()
            covered = conn.execute("SELECT max(to_seq) FROM loss_markers WHERE seq <= ?", (upto_seq,)).fetchone()[0]
            conn.execute("DELETE FROM readings WHERE seq <= ?", (upto_seq,))
            conn.execute("DELETE FROM loss_markers WHERE seq <= ?", (upto_seq,))
            new = max(upto_seq, covered or 0)
            m.delivered_total += new - m.delivered_seq
            m.delivered_seq = new
            m.stored_rows -= rows
            m.stored_bytes -= nbytes + rows * budget.ROW_OVERHEAD
            self._dirty = True
        if rows:
            self.freed += 1
        self._seq.note_delivered(m.delivered_seq)
        return m.delivered_seq

