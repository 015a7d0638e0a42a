"""Side tables of the spool: dead letters, quarantine, states and alarms, rate samples.

A mixin of ``Spool`` (edge/spool/core.py owns the connection and the transaction).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from edge import budget
from edge.spool import common
from edge.spool.common import AppendResult, BadRequest
from edge.spool.queries import _dead_letters, _quarantined, _samples, _states

log = logging.getLogger("edge.spool")

QUARANTINE_RAW_MAX = 1024 * 1024  # per row; sources cut earlier (mqtt quarantine_max_bytes)
QUARANTINE_KEEP = 10_000
DEAD_LETTER_KEEP = 100_000
SAMPLE_RETENTION_S = 24 * 3600


class SideTables:
    """Everything beside the readings log. State lives on the ``Spool`` it is mixed into."""

    def dead_letter(self, seq: int, reason: str) -> None:
        """Move a record ZeroBus rejected to ``dead_letters``; its slot becomes a one-seq loss marker."""
        with self._tx():
            self._flush_pending()
            conn = self._conn
            row = conn.execute("SELECT ts, body FROM readings WHERE seq = ?", (seq,)).fetchone()
            if row is None:
                raise BadRequest(f"dead_letter({seq}): no such undelivered record")
            ts, body = row
            kept = body[:self._side_room(len(body))]  # cut only when one body is over the whole side cap
            conn.execute("INSERT INTO dead_letters(seq, body, reason, ts) VALUES (?, ?, ?, ?)",
                         (seq, kept, reason, time.time()))
            self._meta.side_bytes += len(kept) + budget.ROW_OVERHEAD
            self._side_trim("dead_letters", "body", DEAD_LETTER_KEEP)
            marker = conn.execute("SELECT to_seq, reason FROM loss_markers WHERE seq = ?", (seq,)).fetchone()
            m = self._meta
            m.stored_rows -= 1
            m.stored_bytes -= len(body) + budget.ROW_OVERHEAD
            conn.execute("DELETE FROM readings WHERE seq = ?", (seq,))
            if marker is None:
                self._write_marker(seq, seq, "dead_letter", ts, extend=False)
                m.dead_lettered += 1
            else:
                conn.execute("DELETE FROM loss_markers WHERE seq = ?", (seq,))
                prev = conn.execute("SELECT json FROM state WHERE kind = 'alarm' AND name = 'unexplained_loss'"
                                    ).fetchone()
                count = (json.loads(prev[0])["detail"].get("count", 0) if prev else 0) + 1
                self._alarm("unexplained_loss", f"loss marker at seq {seq} (covering {seq}..{marker[0]}, "
                            f"{marker[1]}) was rejected and dead-lettered: that range is no longer accounted "
                            f"for downstream", {"seq": seq, "to_seq": marker[0], "reason": reason, "count": count})
            self._dirty = True
        self.freed += 1

    def retry_dead_letter(self, dead_letter_id: int) -> AppendResult:
        """Append a dead-lettered record again as a new reading (a new seq; its old slot stays a marker).

        For an operator who fixed the cause (e.g. the table's schema). The dead-letter row is
        kept as evidence, marked with the seq it was retried as; a second retry is refused.
        """
        with self._tx():
            row = self._conn.execute("SELECT seq, body, retried_seq FROM dead_letters WHERE id = ?",
                                     (dead_letter_id,)).fetchone()
            if row is None:
                raise BadRequest(f"no dead letter with id {dead_letter_id}")
            seq, body, retried = row
            if retried is not None:
                raise BadRequest(f"dead letter {dead_letter_id} (seq {seq}) was already retried as seq {retried}")
            if not body:
                raise BadRequest(f"dead letter {dead_letter_id} has no body to retry")
            # Refused whole when it does not fit: inside the writer's group transaction a
            # SpoolFull lets the rest commit, so the retry must not have written anything.
            result = self.append([(common._now_us(), body)], may_drop_batch=False)
            self._conn.execute("UPDATE dead_letters SET retried_seq = ?, retried_ts = ? WHERE id = ?",
                               (result.first_seq, time.time(), dead_letter_id))
        log.warning("dead letter %d (seq %d) retried as seq %d", dead_letter_id, seq, result.first_seq)
        return result

    def quarantine(self, source: str, reason: str, raw: bytes | str | None, meta: Any = None) -> None:
        """Keep input that could not become a reading, bounded: the first QUARANTINE_RAW_MAX bytes (less
        when the side cap is smaller), the last QUARANTINE_KEEP entries, side_max_bytes in all.

        ``raw_len`` is the length given; when the spool keeps less, ``meta["truncated"]`` says so
        (a caller that cut the payload itself passes its own flag, which stays true)."""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "backslashreplace")
        raw = bytes(raw or b"")
        with self._tx():
            kept = raw[:self._side_room(min(len(raw), QUARANTINE_RAW_MAX))]
            if len(kept) < len(raw):
                meta = {**(meta if isinstance(meta, dict) else {} if meta is None else {"meta": meta}),
                        "truncated": True, "kept_bytes": len(kept)}
            self._conn.execute(
                "INSERT INTO quarantine(source, reason, raw, raw_len, meta_json, ts) VALUES (?, ?, ?, ?, ?, ?)",
                (source, reason, kept, len(raw), json.dumps(meta, default=str), time.time()),
            )
            self._meta.side_bytes += len(kept) + budget.ROW_OVERHEAD
            self._side_trim("quarantine", "raw", QUARANTINE_KEEP)
            self._meta.quarantined += 1
            self._dirty = True

    def _side_room(self, nbytes: int) -> int:
        """Make room under ``side_max_bytes`` for one side row of ``nbytes`` payload bytes: the
        oldest quarantine rows go first, then the oldest dead letters (a reading ZeroBus refused
        is worth more than input that never parsed); each counted in ``side_dropped``. Readings
        are never touched. Returns how many payload bytes the new row may keep."""
        keep = max(0, min(nbytes, self.side_max_bytes - budget.ROW_OVERHEAD))
        need = self._meta.side_bytes + keep + budget.ROW_OVERHEAD - self.side_max_bytes
        for table, col in (("quarantine", "raw"), ("dead_letters", "body")):
            if need <= 0:
                break
            cur = self._conn.execute(f"SELECT id, coalesce(length({col}), 0) + ? FROM {table} ORDER BY id",
                                     (budget.ROW_OVERHEAD,))
            upto, freed, n = None, 0, 0
            for rid, nb in cur:
                upto, freed, n = rid, freed + nb, n + 1
                if freed >= need:
                    break
            cur.close()
            if upto is not None:
                self._conn.execute(f"DELETE FROM {table} WHERE id <= ?", (upto,))
                self._meta.side_bytes -= freed
                self._meta.side_dropped[table] = self._meta.side_dropped.get(table, 0) + n
                self._dirty = True
                need -= freed
        return keep

    def _side_trim(self, table: str, col: str, keep_rows: int) -> None:
        """Keep only the newest ``keep_rows`` rows of a side table (its bytes leave side_bytes)."""
        n, nbytes = self._conn.execute(
            f"SELECT count(*), coalesce(sum(length({col})), 0) FROM {table} "
            f"WHERE id <= (SELECT max(id) FROM {table}) - ?", (keep_rows,)).fetchone()
        if n:
            self._conn.execute(f"DELETE FROM {table} WHERE id <= (SELECT max(id) FROM {table}) - ?", (keep_rows,))
            self._meta.side_bytes -= nbytes + n * budget.ROW_OVERHEAD
        self._dirty = True

    def put_state(self, kind: str, name: str, obj: Any) -> None:
        with self._tx():
            self._conn.execute(
                "INSERT OR REPLACE INTO state(kind, name, json, updated_ts) VALUES (?, ?, ?, ?)",
                (kind, name, json.dumps(obj, default=str), time.time()),
            )

    def _alarm(self, name: str, message: str, detail: dict | None = None) -> None:
        log.critical("SPOOL ALARM %s: %s", name, message)
        self.put_state("alarm", name, {"message": message, "detail": detail or {}, "raised_ts": time.time()})

    def clear_alarm(self, name: str) -> None:
        with self._tx():
            self._conn.execute("DELETE FROM state WHERE kind = 'alarm' AND name = ?", (name,))

    def states(self, kind: str | None = None) -> list[dict]:
        return _states(self._conn, kind)

    def alarms(self) -> list[dict]:
        return _states(self._conn, "alarm")

    def dead_letters(self, limit: int = 100) -> list[dict]:
        return _dead_letters(self._conn, limit)

    def quarantined(self, limit: int = 100) -> list[dict]:
        return _quarantined(self._conn, limit)

    def samples(self, since_ts: float = 0.0) -> list[dict]:
        return _samples(self._conn, since_ts)

    def sample(self, now: float | None = None) -> None:
        """Record counters for rates and charts; trims samples past the retention."""
        now = time.time() if now is None else now
        m = self._meta
        with self._tx():
            self._conn.execute(
                "INSERT OR REPLACE INTO stats_samples(ts, depth_rows, depth_bytes, appended_total, "
                "delivered_total, dropped_total, dropped_json) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (now, m.stored_rows, m.stored_bytes, m.appended_total, m.delivered_total,
                 sum(m.dropped.values()), json.dumps(m.dropped, sort_keys=True)),
            )
            self._conn.execute("DELETE FROM stats_samples WHERE ts < ?", (now - SAMPLE_RETENTION_S,))
            self._record_background_check()

