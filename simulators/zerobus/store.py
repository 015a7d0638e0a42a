"""The emulator's landing table: a SQLite file a person can open with the sqlite3 CLI.

The only module with SQL. One writer thread owns the write connection and
group-commits whatever batches queued up while the previous commit ran; a
batch's future resolves only after its COMMIT, and the stream acks only then.
``synchronous=NORMAL`` in WAL mode: a power cut may lose the last commits, an
emulator process crash may not - good enough for a test double, and it keeps
fsync off the hot path. Checkpoints (the one place NORMAL still fsyncs) run in
their own thread, so the writer never waits on the disk.

Size: ~420 lines, on purpose: the schema, the writer thread and the accounting queries share
one connection discipline that is easier to check in one file.

Per row we keep the raw record bytes plus the key columns pulled out cheaply;
``readings`` is a view for people, decoding happens in the query tools.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from .ledger import Ledger
from .records import Decoded

log = logging.getLogger("zerobus_emulator.store")

SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
  stream_id TEXT PRIMARY KEY,
  table_name TEXT NOT NULL,
  record_type TEXT NOT NULL,
  descriptor BLOB,
  opened_us INTEGER NOT NULL,
  client TEXT
);
CREATE TABLE IF NOT EXISTS batches (
  id INTEGER PRIMARY KEY,
  table_name TEXT NOT NULL,
  stream_id TEXT NOT NULL,
  offset_id INTEGER NOT NULL,
  ingest_us INTEGER NOT NULL,
  n_records INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS rows (
  id INTEGER PRIMARY KEY,
  batch_id INTEGER NOT NULL,
  appliance_id TEXT,
  seq INTEGER,
  kind TEXT,
  loss_from_seq INTEGER,
  loss_to_seq INTEGER,
  record BLOB NOT NULL
);
-- Runs of consecutive seqs of one appliance, one per batch in the common case: they index
-- the rows (first_row_id + seq - first_seq) at a fraction of a per-row index's cost.
CREATE TABLE IF NOT EXISTS runs (
  batch_id INTEGER NOT NULL,
  appliance_id TEXT NOT NULL,
  first_seq INTEGER NOT NULL,
  last_seq INTEGER NOT NULL,
  first_row_id INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_key ON runs(appliance_id, first_seq);
CREATE INDEX IF NOT EXISTS rows_not_reading ON rows(kind) WHERE kind <> 'reading';
CREATE VIEW IF NOT EXISTS readings AS
  SELECT r.id AS row_id, b.table_name, r.appliance_id, r.seq, r.kind, r.loss_from_seq, r.loss_to_seq,
         b.stream_id, b.offset_id, b.ingest_us, length(r.record) AS record_bytes, r.record
  FROM rows r JOIN batches b ON b.id = r.batch_id;
"""

_INSERT_BATCH = "INSERT INTO batches(table_name, stream_id, offset_id, ingest_us, n_records) VALUES (?, ?, ?, ?, ?)"
# Rows are inserted by ONE statement per batch that expands a JSON list inside SQLite:
# executemany would drop and retake the GIL for every row, and with the event loop
# busy decoding the next batch that handoff, not SQLite, was the bottleneck.
# The record bytes are cut out of the batch's concatenated records with substr().
_INSERT_RUN = """
INSERT INTO rows(batch_id, appliance_id, seq, kind, record)
SELECT ?, ?, ? + key, ?, substr(?, sum(value) OVER (ORDER BY key ROWS UNBOUNDED PRECEDING) - value + 1, value)
FROM json_each(?)
"""
_INSERT_ROWS = """
INSERT INTO rows(batch_id, appliance_id, seq, kind, loss_from_seq, loss_to_seq, record)
SELECT ?, value->>0, value->>1, value->>2, value->>3, value->>4, substr(?, value->>5, value->>6)
FROM json_each(?)
"""
_INSERT_RUNS = "INSERT INTO runs(batch_id, appliance_id, first_seq, last_seq, first_row_id) VALUES (?, ?, ?, ?, ?)"
_INSERT_STREAM = (
    "INSERT OR REPLACE INTO streams(stream_id, table_name, record_type, descriptor, opened_us, client) VALUES (?, ?, ?, ?, ?, ?)"
)

_RUNS_FROM = """
SELECT r.first_seq, r.last_seq, r.first_row_id FROM runs r JOIN batches b ON b.id = r.batch_id
WHERE r.appliance_id = ? AND r.first_seq >= ? - (SELECT coalesce(max(last_seq - first_seq), 0) FROM runs)
  AND r.last_seq >= ? AND b.table_name = ?
ORDER BY r.first_seq
"""
_ROWS_BY_ID = """
SELECT r.id, r.appliance_id, r.seq, r.kind, r.record, b.stream_id, b.offset_id, b.ingest_us
FROM rows r JOIN batches b ON b.id = r.batch_id
WHERE r.id BETWEEN ? AND ?
"""
_ROWS_BY_ARRIVAL = """
SELECT r.id, r.appliance_id, r.seq, r.kind, r.record, b.stream_id, b.offset_id, b.ingest_us
FROM rows r JOIN batches b ON b.id = r.batch_id
WHERE b.table_name = ? AND (r.seq IS NULL OR r.seq >= ?)
ORDER BY r.id LIMIT ?
"""
_STREAM_INFO = "SELECT record_type, descriptor FROM streams WHERE stream_id = ?"

_RUN_RANGES = """
SELECT b.table_name, r.appliance_id, r.first_seq, r.last_seq FROM runs r JOIN batches b ON b.id = r.batch_id
ORDER BY b.table_name, r.appliance_id, r.first_seq
"""
_TABLE_COUNTS = """
SELECT table_name, sum(n_records), count(*), max(ingest_us) FROM batches GROUP BY table_name
"""
_MARKERS = """
SELECT b.table_name, r.appliance_id, r.loss_from_seq, r.loss_to_seq
FROM rows r JOIN batches b ON b.id = r.batch_id
WHERE r.kind <> 'reading' AND r.kind = 'loss' AND r.appliance_id IS NOT NULL
"""
_STREAM_COUNTS = "SELECT table_name, count(*) FROM streams GROUP BY table_name"


@dataclass
class _Op:
    kind: str  # "batch" | "stream"
    args: tuple
    future: Future


WAL_LIMIT_BYTES = 64 * 1024 * 1024


def now_us() -> int:
    return time.time_ns() // 1000


def connect(path: str, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10, check_same_thread=False)
    else:
        conn = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


class Store:
    """Writer thread + read helpers over one SQLite file."""

    MAX_GROUP_ROWS = 50_000

    def __init__(self, path: str, ledger: Ledger):
        self.path = path
        self.ledger = ledger
        conn = connect(path)
        conn.executescript(SCHEMA)
        conn.close()
        self._queue: queue.Queue[_Op | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="emulator-store-writer", daemon=True)
        self._stop_checkpoints = threading.Event()
        self._checkpointer = threading.Thread(target=self._checkpoints, name="emulator-store-checkpoint", daemon=True)
        self.commits = 0
        self.commit_wall_s = 0.0
        self.commit_cpu_s = 0.0

    def start(self) -> None:
        self._thread.start()
        self._checkpointer.start()

    def close(self, timeout: float = 30.0) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)
        self._stop_checkpoints.set()
        if self._checkpointer.is_alive():
            self._checkpointer.join(timeout)
        conn = connect(self.path)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()

    def _checkpoints(self) -> None:
        conn = connect(self.path)
        try:
            while not self._stop_checkpoints.wait(0.5):
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            conn.close()

    # -- writes (any thread) -------------------------------------------------
    def add_batch(self, table: str, stream_id: str, offset_id: int, decoded: Decoded) -> Future:
        fut: Future = Future()
        self._queue.put(_Op("batch", (table, stream_id, offset_id, decoded), fut))
        return fut

    def add_stream(self, stream_id: str, table: str, record_type: str, descriptor: bytes | None, client: str) -> Future:
        fut: Future = Future()
        self._queue.put(_Op("stream", (stream_id, table, record_type, descriptor, now_us(), client), fut))
        return fut

    # -- writer thread ---------------------------------------------------------
    def _run(self) -> None:
        conn = connect(self.path)
        conn.execute("PRAGMA wal_autocheckpoint=0")  # see _checkpoints
        conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
        try:
            while True:
                op = self._queue.get()
                if op is None:
                    return
                group, rows, stop = [op], len(op.args[3]) if op.kind == "batch" else 0, False
                while rows < self.MAX_GROUP_ROWS:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    group.append(nxt)
                    rows += len(nxt.args[3]) if nxt.kind == "batch" else 0
                try:
                    self._commit(conn, group)
                    self._bound_wal(conn)
                except Exception as exc:  # never let the writer die: every later stream would hang
                    log.exception("store writer: unexpected error")
                    for o in group:
                        if not o.future.done():
                            o.future.set_exception(exc)
                if stop:
                    return
        finally:
            conn.close()

    def _bound_wal(self, conn: sqlite3.Connection) -> None:
        """Keep the WAL from growing without end under continuous load.

        The background checkpoints never catch up with a writer that is always busy, so
        the WAL is never restarted. Past the limit the writer checkpoints once itself,
        between commits (most pages are already copied): the next write restarts the
        WAL, and journal_size_limit shrinks the file.
        """
        try:
            if os.path.getsize(self.path + "-wal") > WAL_LIMIT_BYTES:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except (OSError, sqlite3.Error):
            pass

    def _commit(self, conn: sqlite3.Connection, group: list[_Op]) -> None:
        ingest_us = now_us()
        t_wall, t_cpu = time.perf_counter(), time.thread_time()
        try:
            conn.execute("BEGIN")
            for op in group:
                if op.kind == "stream":
                    conn.execute(_INSERT_STREAM, op.args)
                else:
                    self._insert_batch(conn, ingest_us, *op.args)
            conn.execute("COMMIT")
        except Exception as exc:  # the stream turns this into a retriable INTERNAL
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    log.exception("store writer: rollback failed")
            for op in group:
                op.future.set_exception(exc)
            return
        self.commits += 1
        self.commit_wall_s += time.perf_counter() - t_wall
        self.commit_cpu_s += time.thread_time() - t_cpu
        for op in group:
            # The rows are committed: the ack must go out whatever the accounting does.
            if op.kind == "batch":
                table, _, _, d = op.args
                try:
                    self.ledger.observe(table, d.apps, d.seqs, d.kinds, d.extra, ingest_us)
                except Exception:
                    log.exception("store writer: /stats accounting failed for a committed batch")
            op.future.set_result(ingest_us)

    @staticmethod
    def _insert_batch(conn: sqlite3.Connection, ingest_us: int, table: str, stream_id: str, offset_id: int, d: Decoded) -> None:
        if not len(d):
            return
        batch_id = conn.execute(_INSERT_BATCH, (table, stream_id, offset_id, ingest_us, len(d))).lastrowid
        blob = b"".join(d.records)
        lens = list(map(len, d.records))
        n, app, s0 = len(d), d.apps[0], d.seqs[0]
        if not d.extra and d.apps.count(app) == n and d.kinds.count(d.kinds[0]) == n and (
            d.seqs.count(None) == n if s0 is None else d.seqs == list(range(s0, s0 + n))
        ):
            # One appliance, consecutive seqs, one kind: the common case, only lengths cross over.
            last_id = conn.execute(_INSERT_RUN, (batch_id, app, s0, d.kinds[0], blob, json.dumps(lens))).lastrowid
            if app is not None and s0 is not None:
                conn.execute(_INSERT_RUNS, (batch_id, app, s0, s0 + n - 1, last_id - n + 1))
            return
        starts = itertools.accumulate(lens, initial=1)
        lf = [None] * n
        lt = [None] * n
        for i, (a, b) in d.extra.items():
            lf[i], lt[i] = a, b
        payload = json.dumps(list(zip(d.apps, d.seqs, d.kinds, lf, lt, starts, lens)))
        last_id = conn.execute(_INSERT_ROWS, (batch_id, blob, payload)).lastrowid
        # rowids of one INSERT are consecutive (rows are never deleted), so row i is first_id + i.
        conn.executemany(_INSERT_RUNS, [(batch_id, a, lo, hi, last_id - n + 1 + i) for a, lo, hi, i in runs_of(d.apps, d.seqs)])

    # -- reads (own short-lived connection; any thread) --------------------------
    def rows(self, table: str, appliance_id: str | None = None, from_seq: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Raw rows (record bytes undecoded) plus each stream's record type and descriptor.

        With an appliance: ordered by (seq, arrival), found through ``runs``; without: arrival order.
        """
        conn = connect(self.path, readonly=True)
        try:
            lo = -(1 << 63) if from_seq is None else from_seq
            if appliance_id is not None:
                fetched = self._rows_by_appliance(conn, table, appliance_id, lo, limit)
            else:
                fetched = conn.execute(_ROWS_BY_ARRIVAL, (table, lo, limit)).fetchall()
            out = []
            streams: dict[str, tuple] = {}
            for row_id, app, seq, kind, record, stream_id, offset_id, ingest_us in fetched:
                if stream_id not in streams:
                    streams[stream_id] = conn.execute(_STREAM_INFO, (stream_id,)).fetchone() or ("proto", None)
                rtype, desc = streams[stream_id]
                out.append(
                    {
                        "row_id": row_id,
                        "appliance_id": app,
                        "seq": seq,
                        "kind": kind,
                        "record": record,
                        "stream_id": stream_id,
                        "offset_id": offset_id,
                        "ingest_us": ingest_us,
                        "record_type": rtype,
                        "descriptor": desc,
                    }
                )
            return out
        finally:
            conn.close()

    @staticmethod
    def _rows_by_appliance(conn: sqlite3.Connection, table: str, app: str, lo: int, limit: int) -> list[tuple]:
        # Runs come in first_seq order; once a run starts beyond the limit-th smallest seq
        # collected so far, no later run can contribute.
        seqs: list[int] = []
        spans: list[tuple[int, int]] = []
        for first, last, first_id in conn.execute(_RUNS_FROM, (app, lo, lo, table)):
            if len(seqs) >= limit and first > seqs[limit - 1]:
                break
            a = max(first, lo)
            b = min(last, a + limit - 1)
            spans.append((first_id + a - first, first_id + b - first))
            seqs = sorted(seqs + list(range(a, b + 1)))[:limit]
        rows: list[tuple] = []
        for a, b in spans:
            rows.extend(conn.execute(_ROWS_BY_ID, (a, b)).fetchall())
        rows.sort(key=lambda r: (r[2], r[0]))
        return rows[:limit]

    def rebuild(self) -> None:
        """Refill the ledger from what is on disk: runs give the seen seqs, markers come by index."""
        conn = connect(self.path, readonly=True)
        try:
            counts = {t: (n, nb, last) for t, n, nb, last in conn.execute(_TABLE_COUNTS)}
            runs: dict[str, list] = {}
            for t, app, a, b in conn.execute(_RUN_RANGES):
                runs.setdefault(t, []).append((app, a, b))
            markers: dict[str, list] = {}
            marker_rows: dict[str, dict[str, int]] = {}
            for t, app, a, b in conn.execute(_MARKERS):
                marker_rows.setdefault(t, {}).setdefault(app, 0)
                marker_rows[t][app] += 1
                if a is not None and b is not None:
                    markers.setdefault(t, []).append((app, a, b))
            streams = dict(conn.execute(_STREAM_COUNTS).fetchall())
        finally:
            conn.close()
        for t, (n, nb, last) in counts.items():
            keyed = sum(b - a + 1 for _, a, b in runs.get(t, []))
            self.ledger.load(t, n, n - keyed, runs.get(t, []), markers.get(t, []), marker_rows.get(t, {}))
            tl = self.ledger.table(t)
            tl.batches, tl.last_ingest_us = nb, last
        for t, n in streams.items():
            self.ledger.table(t).streams_opened = n


def runs_of(apps: list[Any], seqs: list[Any]) -> list[tuple[Any, int, int, int]]:
    """(appliance, first_seq, last_seq, index of the first row) for each run of consecutive seqs."""
    out: list[tuple[Any, int, int, int]] = []
    cur = None  # [app, first, last, index]
    for i, (app, seq) in enumerate(zip(apps, seqs)):
        if app is None or seq is None:
            if cur:
                out.append(tuple(cur))
            cur = None
        elif cur and app == cur[0] and seq == cur[2] + 1:
            cur[2] = seq
        else:
            if cur:
                out.append(tuple(cur))
            cur = [app, seq, seq, i]
    if cur:
        out.append(tuple(cur))
    return out
