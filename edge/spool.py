"""The durable spool: the only module that speaks SQL to ``spool.db``.

One writer (``Spool``, driven by ``edge.writer.SpoolWriter``) and any number of
short-lived readers (``SpoolReader``) share a SQLite file in WAL mode with
``synchronous=FULL``. Contract points 2-5 of edge/DESIGN.md live here:

* seq is assigned inside the append transaction, contiguous, persisted in
  ``meta`` in the same transaction and never reused (sidecar ``<spool>.seq``
  reservation survives a corrupt or deleted spool file);
* ``ack(upto)`` moves ``meta.delivered_seq`` and deletes by range;
* the byte budget and its policy; every drop leaves a loss marker stored at the
  seq of the first dropped reading, and adjacent drops extend it;
* ``stats()`` is cheap: counters in ``meta``, oldest row by primary key, rates
  from ``stats_samples``.

Integrity at open: a file up to FULL_CHECK_MAX_BYTES gets a full ``PRAGMA
quick_check`` before use. A bigger one (a long outage's backlog, GBs on slow
eMMC) gets the small tables checked fully plus both ends of ``readings``
(catches "not a database", a broken schema or root page) and the full check
runs on a read-only connection in a background thread; damage it finds raises
an alarm and makes the next open run the full check synchronously, which moves
the file aside. So a restart with a big backlog is fast, and damage inside the
backlog is still found, reported and handled. A corrupt file is never deleted:
it moves to ``<name>.corrupt-<UTC>`` (with its -wal/-shm) and a fresh spool
starts above the seq reservation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import functools
import itertools
import json
import logging
import os
import sqlite3
import threading
import time
import urllib.parse
from operator import itemgetter
from pathlib import Path
from typing import Any, Iterator, Sequence

from edge import budget
from edge.encode import encode_loss_marker

log = logging.getLogger("edge.spool")

INSERT_ROWS = 1000  # rows per multi-row INSERT (2 parameters each; SQLite allows 32766)


@functools.lru_cache(maxsize=128)
def _insert_sql(rows: int) -> str:
    return "INSERT INTO readings(ts, body) VALUES " + ",".join(["(?,?)"] * rows)


WHEN_FULL = ("block", "drop_oldest", "drop_newest")
SEQ_BLOCK = 1_000_000
QUARANTINE_RAW_MAX = 64 * 1024
QUARANTINE_KEEP = 10_000
DEAD_LETTER_KEEP = 100_000
SAMPLE_RETENTION_S = 24 * 3600
EXPIRE_CHUNK = 50_000
EXPIRE_CHUNKS_PER_CALL = 10
WAL_CHECKPOINT_BYTES = 16 * 1024 * 1024
WAL_TRUNCATE_BYTES = 64 * 1024 * 1024
# Above this size the full quick_check of the readings table runs in the
# background after open (a multi-GB backlog would otherwise delay every start).
FULL_CHECK_MAX_BYTES = 256 * 1024 * 1024
SQLITE_FULL = 13
_MARKER_RESERVE = 64 + budget.ROW_OVERHEAD  # room for the marker a drop writes

_body = itemgetter(1)


class SpoolError(Exception):
    pass


class SpoolFull(SpoolError):
    """Nothing was stored and nothing was consumed; the caller keeps its data.

    ``cause``: ``budget`` (max_bytes), ``disk_low`` (free disk under
    min_free_bytes) or ``disk_full`` (SQLite / the OS ran out of space).
    """

    def __init__(self, cause: str, message: str = ""):
        super().__init__(message or f"spool full ({cause})")
        self.cause = cause


class BadRequest(SpoolError, ValueError):
    """The request itself is wrong (bad item, ack beyond next_seq...). Nothing was written."""


@dataclasses.dataclass(frozen=True)
class AppendResult:
    first_seq: int
    last_seq: int
    stored: bool = True  # False when drop_newest dropped this batch (a loss marker covers it)
    dropped: int = 0  # readings dropped to make room (drop_oldest) or this batch (drop_newest)


# ---------------------------------------------------------------- schema

_MIGRATIONS: list[tuple[str, ...]] = [
    # v1: readings, counters, dead letters, quarantine.
    (
        """CREATE TABLE readings(
             seq INTEGER PRIMARY KEY,
             ts INTEGER NOT NULL CHECK (typeof(ts) = 'integer'),
             body BLOB NOT NULL CHECK (typeof(body) = 'blob'))""",
        """CREATE TABLE meta(
             id INTEGER PRIMARY KEY CHECK (id = 1),
             appliance_id TEXT NOT NULL,
             next_seq INTEGER NOT NULL,
             delivered_seq INTEGER NOT NULL,
             stored_rows INTEGER NOT NULL DEFAULT 0,
             stored_bytes INTEGER NOT NULL DEFAULT 0,
             appended_total INTEGER NOT NULL DEFAULT 0,
             delivered_total INTEGER NOT NULL DEFAULT 0,
             dropped_json TEXT NOT NULL DEFAULT '{}',
             dead_lettered INTEGER NOT NULL DEFAULT 0,
             quarantined INTEGER NOT NULL DEFAULT 0,
             created_ts REAL)""",
        """CREATE TABLE dead_letters(
             id INTEGER PRIMARY KEY, seq INTEGER NOT NULL, body BLOB, reason TEXT, ts REAL)""",
        """CREATE TABLE quarantine(
             id INTEGER PRIMARY KEY, source TEXT, reason TEXT, raw BLOB, raw_len INTEGER,
             meta_json TEXT, ts REAL)""",
    ),
    # v2: loss-marker bookkeeping, states/alarms for the admin page, rate samples,
    # budget settings visible to read-only processes.
    (
        """CREATE TABLE loss_markers(
             seq INTEGER PRIMARY KEY, to_seq INTEGER NOT NULL, reason TEXT NOT NULL, ts INTEGER)""",
        """CREATE TABLE state(
             kind TEXT NOT NULL, name TEXT NOT NULL, json TEXT NOT NULL, updated_ts REAL NOT NULL,
             PRIMARY KEY (kind, name))""",
        """CREATE TABLE stats_samples(
             ts REAL PRIMARY KEY, depth_rows INTEGER, depth_bytes INTEGER, appended_total INTEGER,
             delivered_total INTEGER, dropped_total INTEGER, dropped_json TEXT)""",
        "ALTER TABLE meta ADD COLUMN markers_written INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE meta ADD COLUMN max_bytes INTEGER",
        "ALTER TABLE meta ADD COLUMN when_full TEXT",
    ),
    # v3: an operator may retry a dead letter; the row stays as evidence, marked with the new seq.
    (
        "ALTER TABLE dead_letters ADD COLUMN retried_seq INTEGER",
        "ALTER TABLE dead_letters ADD COLUMN retried_ts REAL",
    ),
]
SCHEMA_VERSION = len(_MIGRATIONS)


def _refuse_newer(conn: sqlite3.Connection) -> int:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        conn.close()
        raise SpoolError(
            f"spool schema version {version} is newer than this build supports ({SCHEMA_VERSION}); "
            "refusing to touch it (downgrade the spool file or upgrade the appliance)"
        )
    return version


def migrate(conn: sqlite3.Connection, upto: int = SCHEMA_VERSION) -> int:
    """Apply the ordered migrations above the file's ``user_version``, each in
    its own transaction with its version bump. Returns the resulting version."""
    version = _refuse_newer(conn)
    for v in range(version + 1, upto + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for stmt in _MIGRATIONS[v - 1]:
                conn.execute(stmt)
            conn.execute(f"PRAGMA user_version = {int(v)}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        log.info("spool schema migrated to version %d", v)
    return max(version, upto)


# ---------------------------------------------------------------- helpers


def _now_us() -> int:
    return time.time_ns() // 1000


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _disk_free(path: Path) -> int | None:
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _file_size(path: str | Path) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _ro_uri(path: Path) -> str:
    return "file:" + urllib.parse.quote(str(Path(path).resolve())) + "?mode=ro"


def _is_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    return isinstance(exc, sqlite3.OperationalError) and getattr(exc, "sqlite_errorcode", None) == SQLITE_FULL


@dataclasses.dataclass
class _Meta:
    appliance_id: str
    next_seq: int
    delivered_seq: int
    stored_rows: int
    stored_bytes: int
    appended_total: int
    delivered_total: int
    dropped: dict
    dead_lettered: int
    quarantined: int
    markers_written: int


_META_COLS = (
    "appliance_id, next_seq, delivered_seq, stored_rows, stored_bytes, appended_total, "
    "delivered_total, dropped_json, dead_lettered, quarantined, markers_written"
)


def _read_meta(conn: sqlite3.Connection) -> _Meta | None:
    row = conn.execute(f"SELECT {_META_COLS} FROM meta WHERE id = 1").fetchone()
    if row is None:
        return None
    vals = list(row)
    vals[7] = json.loads(vals[7] or "{}")
    return _Meta(*vals)


class _WriterLock:
    """``<spool>.lock`` held with flock for as long as a Spool is open: exactly one
    writer per spool, or two processes would hand out the same seqs. The kernel
    drops it when the process dies, so a crash never leaves a stale lock."""

    def __init__(self, spool_path: Path):
        self.path = spool_path.with_name(spool_path.name + ".lock")
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(self._fd)
            self._fd = None
            raise SpoolError(f"spool {spool_path} is already open for writing (pid {holder}); "
                             "exactly one process may write a spool") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


class SeqReservation:
    """Sidecar ``<spool>.seq``: an upper bound no assigned seq ever reaches.

    Written (fsynced, atomically replaced) once per SEQ_BLOCK seqs, before the
    transaction that crosses it commits; a fresh spool starts at it when the
    old file is corrupt or gone, so seq is never reused.
    """

    def __init__(self, spool_path: Path):
        self.path = spool_path.with_name(spool_path.name + ".seq")
        self.value = self.read()

    def read(self) -> int | None:
        try:
            return int(self.path.read_text().strip())
        except (OSError, ValueError):
            return None

    def ensure_above(self, seq: int) -> None:
        """Make sure every seq <= ``seq`` lies below the reservation."""
        if self.value is not None and seq < self.value:
            return
        new = seq + SEQ_BLOCK
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w") as f:
            f.write(f"{new}\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)
        self.value = new


# ---------------------------------------------------------------- read queries (shared by Spool and SpoolReader)


def _peek(conn: sqlite3.Connection, after_seq: int, max_records: int, max_bytes: int | None) -> list[tuple[int, bytes]]:
    rows = conn.execute(
        "SELECT seq, body FROM readings WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, max_records)
    ).fetchall()
    if max_bytes is None:
        return rows
    total = 0
    for i, (_seq, body) in enumerate(rows):
        total += len(body)
        if total > max_bytes and i > 0:  # always at least one row, else a big row would wedge the drain
            return rows[:i]
    return rows


def _states(conn: sqlite3.Connection, kind: str | None) -> list[dict]:
    if kind is None:
        rows = conn.execute("SELECT kind, name, json, updated_ts FROM state ORDER BY kind, name").fetchall()
    else:
        rows = conn.execute(
            "SELECT kind, name, json, updated_ts FROM state WHERE kind = ? ORDER BY name", (kind,)
        ).fetchall()
    return [{"kind": k, "name": n, "value": json.loads(j), "updated_ts": t} for k, n, j, t in rows]


def _dead_letters(conn: sqlite3.Connection, limit: int) -> list[dict]:
    rows = conn.execute(
        "SELECT id, seq, body, reason, ts, retried_seq FROM dead_letters ORDER BY id DESC LIMIT ?", (limit,)
    ).fetchall()
    return [{"id": i, "seq": s, "body": b, "reason": r, "ts": t, "retried_seq": rs} for i, s, b, r, t, rs in rows]


def _quarantined(conn: sqlite3.Connection, limit: int) -> list[dict]:
    rows = conn.execute(
        "SELECT id, source, reason, raw, raw_len, meta_json, ts FROM quarantine ORDER BY id DESC LIMIT ?", (limit,)
    ).fetchall()
    return [
        {"id": i, "source": s, "reason": r, "raw": raw, "raw_len": n, "meta": json.loads(m or "null"), "ts": t}
        for i, s, r, raw, n, m, t in rows
    ]


def _samples(conn: sqlite3.Connection, since_ts: float) -> list[dict]:
    rows = conn.execute(
        "SELECT ts, depth_rows, depth_bytes, appended_total, delivered_total, dropped_total, dropped_json "
        "FROM stats_samples WHERE ts >= ? ORDER BY ts",
        (since_ts,),
    ).fetchall()
    keys = ("ts", "depth_rows", "depth_bytes", "appended_total", "delivered_total", "dropped_total", "dropped")
    return [dict(zip(keys, r[:6] + (json.loads(r[6] or "{}"),))) for r in rows]


@contextlib.contextmanager
def _read_tx(conn: sqlite3.Connection) -> Iterator[None]:
    """One short read transaction: a consistent view, released at once so the WAL can recycle."""
    if conn.in_transaction:  # the writer asking inside its own transaction already has one
        yield
        return
    conn.execute("BEGIN")
    try:
        yield
    finally:
        conn.execute("COMMIT")


def _stats(conn: sqlite3.Connection, path: Path, now: float | None = None) -> dict:
    """The one stats dict (admin page, /metrics, drills, ``edge spool stats``). Keys:

    depth_rows / depth_bytes: rows in the table (readings and loss markers) and their
    charged bytes (body + ROW_OVERHEAD); depth_seqs: seqs not yet delivered (next_seq - 1 -
    delivered_seq, markers count for every seq they cover); budget_bytes, budget_used_pct,
    when_full; oldest_age_s (by the oldest row's collected ts); next_seq, delivered_seq;
    appended_total (seqs assigned, dropped batches included) and delivered_total (seqs passed
    by the watermark); dropped {cause: readings} and dropped_total; loss_markers_written;
    dead_lettered; quarantined; disk_free_bytes, db_bytes, wal_bytes; ingest_rate_10s/5m and
    drain_rate_10s/5m in seqs/s (None until samples exist); runway_s (None when not filling);
    drain_eta_s (None when not draining, 0 when empty); schema_version; alarms (state records).
    """
    now = time.time() if now is None else now
    with _read_tx(conn):
        meta = _read_meta(conn)
        settings = conn.execute("SELECT max_bytes, when_full FROM meta WHERE id = 1").fetchone()
        oldest = conn.execute("SELECT ts FROM readings ORDER BY seq LIMIT 1").fetchone()
        pts = conn.execute(
            "SELECT ts, appended_total, delivered_total FROM stats_samples "
            "WHERE ts >= (SELECT coalesce(max(ts), 0) FROM stats_samples WHERE ts < ?) ORDER BY ts",
            (now - 300,),
        ).fetchall()
        alarms = _states(conn, "alarm")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    max_bytes, when_full = settings
    disk_free = _disk_free(path.parent)
    ingest = [(t, a) for t, a, _d in pts]
    drain = [(t, d) for t, _a, d in pts]
    rates = {
        f"{name}_rate_{label}": budget.rate(series, (now, current), window)
        for name, series, current in (
            ("ingest", ingest, meta.appended_total),
            ("drain", drain, meta.delivered_total),
        )
        for label, window in (("10s", 10.0), ("5m", 300.0))
    }
    depth_seqs = meta.next_seq - 1 - meta.delivered_seq
    bytes_per_row = meta.stored_bytes / meta.stored_rows if meta.stored_rows else 0.0
    dropped_total = sum(meta.dropped.values())
    return {
        "path": str(path),
        "appliance_id": meta.appliance_id,
        "schema_version": version,
        "depth_rows": meta.stored_rows,
        "depth_seqs": depth_seqs,
        "depth_bytes": meta.stored_bytes,
        "budget_bytes": max_bytes,
        "budget_used_pct": budget.used_pct(meta.stored_bytes, max_bytes or 0),
        "when_full": when_full,
        "oldest_age_s": max(0.0, now - oldest[0] / 1e6) if oldest else None,
        "next_seq": meta.next_seq,
        "delivered_seq": meta.delivered_seq,
        "appended_total": meta.appended_total,
        "delivered_total": meta.delivered_total,
        "dropped": dict(meta.dropped),
        "dropped_total": dropped_total,
        "loss_markers_written": meta.markers_written,
        "dead_lettered": meta.dead_lettered,
        "quarantined": meta.quarantined,
        "disk_free_bytes": disk_free,
        "db_bytes": _file_size(path),
        "wal_bytes": _file_size(f"{path}-wal"),
        **rates,
        "runway_s": budget.runway_s(
            max_bytes or 0, meta.stored_bytes, rates["ingest_rate_10s"], rates["drain_rate_10s"], bytes_per_row
        ),
        "drain_eta_s": budget.drain_eta_s(depth_seqs, rates["ingest_rate_10s"], rates["drain_rate_10s"]),
        "alarms": alarms,
    }


# ---------------------------------------------------------------- integrity and salvage


def _check(path: Path, full: bool) -> str | None:
    """None when the file looks sound, else what is wrong. Read-only: never changes the evidence."""
    try:
        conn = sqlite3.connect(_ro_uri(path), uri=True, isolation_level=None, timeout=10)
    except sqlite3.Error as e:
        return f"cannot open: {e}"
    try:
        if full:
            rows = conn.execute("PRAGMA quick_check").fetchall()
        else:
            # The small tables fully, the big one by its ends: enough to catch a
            # file that is not a database, a broken schema or a damaged root.
            rows = []
            names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for name in names:
                if name != "readings":
                    rows += conn.execute("SELECT * FROM pragma_quick_check(?)", (name,)).fetchall()
            if "readings" in names:
                conn.execute("SELECT seq, ts, length(body) FROM readings ORDER BY seq LIMIT 1").fetchall()
                conn.execute("SELECT seq, ts, length(body) FROM readings ORDER BY seq DESC LIMIT 1").fetchall()
        bad = [r[0] for r in rows if r[0] != "ok"]
        return "; ".join(bad[:5]) if bad else None
    except sqlite3.DatabaseError as e:
        return str(e)
    finally:
        conn.close()


def _salvage(path: Path) -> dict:
    """Best effort: what can still be read of the counters of a corrupt file."""
    out: dict[str, int] = {}
    try:
        conn = sqlite3.connect(_ro_uri(path), uri=True, isolation_level=None, timeout=10)
    except sqlite3.Error:
        return out
    queries = {
        "next_seq": "SELECT next_seq FROM meta WHERE id = 1",
        "delivered_seq": "SELECT delivered_seq FROM meta WHERE id = 1",
        "max_seq": "SELECT max(seq) FROM readings",
        "min_seq": "SELECT min(seq) FROM readings",
    }
    try:
        for key, sql in queries.items():
            try:
                row = conn.execute(sql).fetchone()
            except sqlite3.Error:
                continue
            if row and row[0] is not None:
                out[key] = int(row[0])
    finally:
        conn.close()
    return out


def _move_aside(path: Path) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    # -wal/-shm follow the main file under SQLite's own naming, so the evidence stays openable.
    for suffix in ("-wal", "-shm"):
        side = Path(f"{path}{suffix}")
        if side.exists():
            os.replace(side, f"{target}{suffix}")
    os.replace(path, target)
    _fsync_dir(path.parent)
    return target


# ---------------------------------------------------------------- the writer's spool


class Spool:
    """The spool as its single writer sees it. Not thread-safe: one thread at a
    time (SpoolWriter's thread) calls the mutating methods."""

    def __init__(self, conn: sqlite3.Connection, path: Path, *, appliance_id: str, max_bytes: int,
                 when_full: str, max_age_s: float | None, min_free_bytes: int, seq: SeqReservation):
        self._conn = conn
        self.path = path
        self.appliance_id = appliance_id
        self.max_bytes = max_bytes
        self.when_full = when_full
        self.max_age_s = max_age_s
        self.min_free_bytes = min_free_bytes
        self._seq = seq
        self._depth = 0
        self._protected = 0
        self._dirty = False
        self.commits = 0  # transactions committed (tests count group commits with it)
        self.freed = 0  # bumps whenever rows leave the table (waiters for space watch it)
        self._meta: _Meta = _read_meta(conn)  # type: ignore[assignment]
        self._background: threading.Thread | None = None
        self._background_result: tuple[str, Any] | None = None
        self._after_full = False
        self._lock: _WriterLock | None = None
        self._pending: list[Sequence[tuple[int, bytes]]] = []  # appended in this transaction, not yet inserted
        self._pending_first = self._pending_last = 0

    # ------------------------------------------------------------ open

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        *,
        appliance_id: str,
        max_bytes: int,
        when_full: str = "block",
        max_age_s: float | None = None,
        min_free_bytes: int = 64 * 1024 * 1024,
        full_check_max_bytes: int = FULL_CHECK_MAX_BYTES,
    ) -> "Spool":
        if when_full not in WHEN_FULL:
            raise BadRequest(f"when_full must be one of {WHEN_FULL}, got {when_full!r}")
        if max_bytes <= 0:
            raise BadRequest(f"max_bytes must be positive, got {max_bytes}")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = _WriterLock(path)
        try:
            spool = cls._open_locked(path, appliance_id=appliance_id, max_bytes=max_bytes, when_full=when_full,
                                     max_age_s=max_age_s, min_free_bytes=min_free_bytes,
                                     full_check_max_bytes=full_check_max_bytes)
        except BaseException:
            lock.release()
            raise
        spool._lock = lock
        return spool

    @classmethod
    def _open_locked(cls, path: Path, *, appliance_id: str, max_bytes: int, when_full: str,
                     max_age_s: float | None, min_free_bytes: int, full_check_max_bytes: int) -> "Spool":
        seq = SeqReservation(path)
        corrupt: dict | None = None
        deferred_check = False
        if path.exists():
            size = _file_size(path) + _file_size(f"{path}-wal")
            full = size <= full_check_max_bytes or _previous_check_failed(path)
            problem = _check(path, full)
            if problem is not None:
                salvage = _salvage(path)
                moved = _move_aside(path)
                corrupt = {"problem": problem, "moved_to": str(moved), **salvage}
                log.critical("SPOOL CORRUPT: %s; moved aside to %s, starting a fresh spool", problem, moved)
            else:
                deferred_check = not full
        elif seq.value is not None:
            corrupt = {"problem": "spool file missing while its seq reservation exists", "moved_to": None}
            log.critical("SPOOL MISSING: %s absent but %s exists; starting after the reservation", path, seq.path)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        _refuse_newer(conn)  # before any pragma rewrites the header of a file we do not understand
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute(f"PRAGMA journal_size_limit = {WAL_TRUNCATE_BYTES}")
        conn.execute("PRAGMA busy_timeout = 5000")
        migrate(conn)
        existing = _read_meta(conn)
        if existing is not None and existing.appliance_id != appliance_id:
            conn.close()
            raise BadRequest(
                f"spool {path} belongs to appliance {existing.appliance_id!r}, not {appliance_id!r}: "
                "seqs are per appliance; use another spool path"
            )
        if existing is None:
            start = max(1, seq.value or 1)
            if corrupt:
                start = max(start, corrupt.get("next_seq", 1), corrupt.get("max_seq", 0) + 1)
            conn.execute(
                "INSERT INTO meta(id, appliance_id, next_seq, delivered_seq, created_ts) VALUES (1, ?, ?, ?, ?)",
                (appliance_id, start, start - 1, time.time()),
            )
        conn.execute("UPDATE meta SET max_bytes = ?, when_full = ? WHERE id = 1", (max_bytes, when_full))
        spool = cls(conn, path, appliance_id=appliance_id, max_bytes=max_bytes, when_full=when_full,
                    max_age_s=max_age_s, min_free_bytes=min_free_bytes, seq=seq)
        seq.ensure_above(spool._meta.next_seq)
        if corrupt:
            spool._after_corruption(corrupt)
        if deferred_check:
            spool._start_background_check()
        return spool

    def _after_corruption(self, info: dict) -> None:
        start = self._meta.next_seq
        delivered = info.get("delivered_seq")
        known_next = info.get("next_seq")
        with self._tx():
            if delivered is not None and delivered + 1 <= start - 1:
                # Everything undelivered in the old file, and the reserved seqs
                # never assigned up to the new start, is covered by one marker so
                # the seq stream stays contiguous downstream.
                lost = (known_next or start) - 1 - delivered
                self._meta.delivered_seq = delivered
                self._write_marker(delivered + 1, start - 1, "spool_corrupt", _now_us(), extend=False)
                self._count_drop("spool_corrupt", max(0, lost))
            self._alarm(
                "spool_corrupt",
                f"spool file was unreadable ({info['problem']}); moved aside to {info['moved_to']}; "
                f"fresh spool starts at seq {start}"
                + ("" if delivered is not None else "; delivered watermark unknown, undelivered readings lost"),
                {**info, "new_start_seq": start},
            )

    # ------------------------------------------------------------ transactions

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group several requests in one transaction (the writer's group commit)."""
        with self._tx():
            yield

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._depth = 1
        if self._after_full:
            self._after_full = not self._checkpoint("TRUNCATE")
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            yield
            self._flush_pending()
            if self._dirty:
                self._flush_meta()
            self._conn.execute("COMMIT")
            self.commits += 1
        except BaseException as exc:
            self._pending = []
            if self._conn.in_transaction:
                try:
                    self._conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            self._meta = _read_meta(self._conn)
            if _is_full(exc):
                # The WAL holds pages the main file has no room for yet; until a
                # checkpoint moves them, every delete makes the WAL (and the disk) fuller.
                self._after_full = True
                raise SpoolFull("disk_full", f"disk full while writing the spool: {exc}") from exc
            if isinstance(exc, (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError)):
                raise BadRequest(f"bad request for the spool: {exc}") from exc
            raise
        finally:
            self._depth = 0
            self._dirty = False

    def _flush_meta(self) -> None:
        m = self._meta
        self._conn.execute(
            "UPDATE meta SET next_seq = ?, delivered_seq = ?, stored_rows = ?, stored_bytes = ?, "
            "appended_total = ?, delivered_total = ?, dropped_json = ?, dead_lettered = ?, quarantined = ?, "
            "markers_written = ? WHERE id = 1",
            (m.next_seq, m.delivered_seq, m.stored_rows, m.stored_bytes, m.appended_total, m.delivered_total,
             json.dumps(m.dropped, sort_keys=True), m.dead_lettered, m.quarantined, m.markers_written),
        )

    # ------------------------------------------------------------ append and budget

    def append(self, items: Sequence[tuple[int, bytes]]) -> AppendResult:
        """Store ``(collected_ts_us, body)`` items in one transaction; seqs are contiguous."""
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
            limit = budget.effective_budget(self.max_bytes, m.stored_bytes, _disk_free(self.path.parent),
                                            self.min_free_bytes)
            if not budget.fits(m.stored_bytes, incoming, limit):
                self._flush_pending()  # drops and markers work on the table as it stands
                cause = "budget" if m.stored_bytes + incoming > self.max_bytes else "disk_low"
                if self.when_full == "block":
                    raise SpoolFull(cause, f"spool full ({cause}): {m.stored_bytes} of {limit} bytes used, "
                                           f"batch needs {incoming}")
                if self.when_full == "drop_oldest":
                    dropped = self._drop_oldest(m.stored_bytes + incoming + _MARKER_RESERVE - limit)
                if self.when_full == "drop_newest" or dropped < 0:
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
        """Would ``nbytes`` more fit the budget and the disk right now (for waiters after a SpoolFull)?"""
        m = self._meta
        limit = budget.effective_budget(self.max_bytes, m.stored_bytes, _disk_free(self.path.parent),
                                        self.min_free_bytes)
        return budget.fits(m.stored_bytes, nbytes + budget.ROW_OVERHEAD, limit)

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
        log.warning("spool %s: dropped %d readings, seq %d..%d now covered by a loss marker",
                    reason, readings_dropped, first, to_seq)
        return readings_dropped

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
        cutoff = (now_us or _now_us()) - int(self.max_age_s * 1e6)
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
        return m.delivered_seq

    def dead_letter(self, seq: int, reason: str) -> None:
        """Move a record ZeroBus rejected to ``dead_letters``; its slot becomes a one-seq loss marker."""
        with self._tx():
            self._flush_pending()
            conn = self._conn
            row = conn.execute("SELECT ts, body FROM readings WHERE seq = ?", (seq,)).fetchone()
            if row is None:
                raise BadRequest(f"dead_letter({seq}): no such undelivered record")
            ts, body = row
            conn.execute("INSERT INTO dead_letters(seq, body, reason, ts) VALUES (?, ?, ?, ?)",
                         (seq, body, reason, time.time()))
            conn.execute("DELETE FROM dead_letters WHERE id <= (SELECT max(id) FROM dead_letters) - ?",
                         (DEAD_LETTER_KEEP,))
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
            result = self.append([(_now_us(), body)])
            if not result.stored:
                raise SpoolFull("budget", "spool full: the retried record was not stored")
            self._conn.execute("UPDATE dead_letters SET retried_seq = ?, retried_ts = ? WHERE id = ?",
                               (result.first_seq, time.time(), dead_letter_id))
        log.warning("dead letter %d (seq %d) retried as seq %d", dead_letter_id, seq, result.first_seq)
        return result

    def checkpoint(self, mode: str = "TRUNCATE") -> str:
        """An explicit WAL checkpoint (operator request); returns what happened."""
        if mode not in ("PASSIVE", "FULL", "RESTART", "TRUNCATE"):
            raise BadRequest(f"checkpoint mode must be PASSIVE, FULL, RESTART or TRUNCATE, not {mode!r}")
        self._flush_pending()
        before = _file_size(f"{self.path}-wal")
        done = self._checkpoint(mode)
        after = _file_size(f"{self.path}-wal")
        return (f"wal_checkpoint({mode}) {'completed' if done else 'partial (a reader held a snapshot)'}: "
                f"WAL {before} -> {after} bytes")

    # ------------------------------------------------------------ side tables

    def quarantine(self, source: str, reason: str, raw: bytes | str | None, meta: Any = None) -> None:
        """Keep input that could not become a reading, bounded (first 64 KiB, last QUARANTINE_KEEP entries)."""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "backslashreplace")
        raw = bytes(raw or b"")
        with self._tx():
            self._conn.execute(
                "INSERT INTO quarantine(source, reason, raw, raw_len, meta_json, ts) VALUES (?, ?, ?, ?, ?, ?)",
                (source, reason, raw[:QUARANTINE_RAW_MAX], len(raw), json.dumps(meta, default=str), time.time()),
            )
            self._conn.execute("DELETE FROM quarantine WHERE id <= (SELECT max(id) FROM quarantine) - ?",
                               (QUARANTINE_KEEP,))
            self._meta.quarantined += 1
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

    def stats(self) -> dict:
        self._flush_pending()
        if self._dirty:  # inside the writer's transaction: let the query see this transaction's counters
            self._flush_meta()
        return _stats(self._conn, self.path)

    # ------------------------------------------------------------ maintenance (the writer calls these)

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

    def maintain_wal(self, idle: bool) -> str | None:
        """Bound the WAL: PASSIVE checkpoint past WAL_CHECKPOINT_BYTES, TRUNCATE when idle past the limit."""
        wal = _file_size(f"{self.path}-wal")
        mode = None
        if wal > WAL_TRUNCATE_BYTES and idle:
            mode = "TRUNCATE"
        elif wal > WAL_CHECKPOINT_BYTES:
            mode = "PASSIVE"
        if mode is None:
            return None
        self._checkpoint(mode)
        return mode

    def _checkpoint(self, mode: str) -> bool:
        """True when the checkpoint completed (every WAL frame is in the main file)."""
        self._conn.execute("PRAGMA busy_timeout = 100")  # a reader must not stall the writer for long
        try:
            busy, frames, done = self._conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
            return not busy and frames == done
        except sqlite3.Error as e:
            log.info("wal checkpoint %s deferred: %s", mode, e)
            return False
        finally:
            self._conn.execute("PRAGMA busy_timeout = 5000")

    def _start_background_check(self) -> None:
        def run() -> None:
            t0 = time.monotonic()
            problem = _check(self.path, full=True)
            self._background_result = (problem or "ok", round(time.monotonic() - t0, 3))

        self._background = threading.Thread(target=run, name="spool-integrity", daemon=True)
        self._background.start()

    def wait_background_check(self, timeout: float | None = None) -> None:
        if self._background is not None:
            self._background.join(timeout)
            with self._tx():
                self._record_background_check()

    def _record_background_check(self) -> None:
        if self._background_result is None:
            return
        result, duration = self._background_result
        self._background_result = None
        self.put_state("integrity", "readings", {"result": result, "duration_s": duration, "checked_ts": time.time()})
        if result != "ok":
            self._alarm("integrity_check_failed",
                        f"background quick_check of the spool found damage ({result}); the next start runs a "
                        "full check and moves the file aside", {"result": result})

    def close(self) -> None:
        try:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as e:
            log.info("final checkpoint skipped: %s", e)
        self._conn.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def _previous_check_failed(path: Path) -> bool:
    try:
        conn = sqlite3.connect(_ro_uri(path), uri=True, isolation_level=None, timeout=10)
        try:
            row = conn.execute("SELECT json FROM state WHERE kind = 'integrity' AND name = 'readings'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return True
    return bool(row) and json.loads(row[0]).get("result") != "ok"


# ---------------------------------------------------------------- readers


class SpoolReader:
    """Read-only view for other threads and processes (forwarder, admin, CLI).

    Every call is one short read transaction: no snapshot outlives a call, so
    the writer's checkpoints can always recycle the WAL.
    """

    def __init__(self, path: str | os.PathLike, timeout: float = 5.0):
        self.path = Path(path)
        if not self.path.exists():
            raise SpoolError(f"no spool at {self.path}")
        self._conn = sqlite3.connect(_ro_uri(self.path), uri=True, isolation_level=None,
                                     check_same_thread=False, timeout=timeout)
        self._lock = threading.Lock()

    def peek(self, after_seq: int, max_records: int = 1000, max_bytes: int | None = None) -> list[tuple[int, bytes]]:
        with self._lock:
            return _peek(self._conn, after_seq, max_records, max_bytes)

    def watermark(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT delivered_seq FROM meta WHERE id = 1").fetchone()[0]

    def stats(self) -> dict:
        with self._lock:
            return _stats(self._conn, self.path)

    def states(self, kind: str | None = None) -> list[dict]:
        with self._lock:
            return _states(self._conn, kind)

    def alarms(self) -> list[dict]:
        return self.states("alarm")

    def dead_letters(self, limit: int = 100) -> list[dict]:
        with self._lock:
            return _dead_letters(self._conn, limit)

    def quarantined(self, limit: int = 100) -> list[dict]:
        with self._lock:
            return _quarantined(self._conn, limit)

    def samples(self, since_ts: float = 0.0) -> list[dict]:
        with self._lock:
            return _samples(self._conn, since_ts)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "SpoolReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
