"""The spool's schema: ordered migrations (``PRAGMA user_version``) and the ``meta`` row."""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3

from edge.budget import ROW_OVERHEAD
from edge.spool.common import SpoolError

log = logging.getLogger("edge.spool")

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
    # v4: quarantine and dead-letter bytes count in the budget (side_bytes), with their own
    # cap; what that cap pushed out is counted in side_dropped_json.
    (
        "ALTER TABLE meta ADD COLUMN side_bytes INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE meta ADD COLUMN side_dropped_json TEXT NOT NULL DEFAULT '{}'",
        "ALTER TABLE meta ADD COLUMN side_max_bytes INTEGER",
        f"""UPDATE meta SET side_bytes =
             (SELECT coalesce(sum(length(raw)), 0) + {ROW_OVERHEAD} * count(*) FROM quarantine)
           + (SELECT coalesce(sum(length(body)), 0) + {ROW_OVERHEAD} * count(*) FROM dead_letters)""",
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
            apply_migrations(conn, v - 1, v)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return max(version, upto)


def apply_migrations(conn: sqlite3.Connection, version: int, upto: int = SCHEMA_VERSION) -> None:
    """The migrations above ``version`` inside the caller's transaction (``Spool.open`` creates a
    new file's whole schema and its meta row in one commit, so a reader never sees half of it)."""
    for v in range(version + 1, upto + 1):
        for stmt in _MIGRATIONS[v - 1]:
            conn.execute(stmt)
        conn.execute(f"PRAGMA user_version = {int(v)}")
        log.info("spool schema migrated to version %d", v)

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
    side_bytes: int  # quarantine + dead letters, charged like readings (length + ROW_OVERHEAD)
    side_dropped: dict  # {"quarantine": n, "dead_letters": n} rows the side cap pushed out


_META_COLS = (
    "appliance_id, next_seq, delivered_seq, stored_rows, stored_bytes, appended_total, "
    "delivered_total, dropped_json, dead_lettered, quarantined, markers_written, side_bytes, side_dropped_json"
)


def _read_meta(conn: sqlite3.Connection) -> _Meta | None:
    row = conn.execute(f"SELECT {_META_COLS} FROM meta WHERE id = 1").fetchone()
    if row is None:
        return None
    vals = list(row)
    vals[7] = json.loads(vals[7] or "{}")
    vals[12] = json.loads(vals[12] or "{}")
    return _Meta(*vals)

