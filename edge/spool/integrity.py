"""Integrity of the spool file: check (read-only), salvage what counters can still be read, move aside.

A corrupt file is never deleted: it moves to ``<name>.corrupt-<UTC>`` with its -wal/-shm.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from edge.spool.common import _file_size, _fsync_dir, _ro_uri

# Above this size the full quick_check of the readings table runs in the
# background after open (a multi-GB backlog would otherwise delay every start).
FULL_CHECK_MAX_BYTES = 256 * 1024 * 1024

log = logging.getLogger("edge.spool")

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
    if path.exists():
        os.replace(path, target)
    _fsync_dir(path.parent)
    return target

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



def inspect_file(path: Path, seq: Any, full_check_max_bytes: int) -> tuple[dict | None, bool]:
    """Before the writer opens ``path``: ``(damage, deferred_check)``. ``damage`` (None when the file
    looks sound or is new) says what is wrong, where the file went and what counters were salvaged;
    ``deferred_check``: the file is big, only its ends were checked, the full check runs later."""
    if path.exists():
        size = _file_size(path) + _file_size(f"{path}-wal")
        if size == 0 and seq.value is not None:
            problem = "spool file is empty (0 bytes)"
        else:
            full = size <= full_check_max_bytes or _previous_check_failed(path)
            problem = _check(path, full)
            if problem is None:
                return None, not full
        salvage = _salvage(path)
        moved = _move_aside(path)
        log.critical("SPOOL CORRUPT: %s; moved aside to %s, starting a fresh spool", problem, moved)
        return {"problem": problem, "moved_to": str(moved), **salvage}, False
    moved = None
    if any(Path(f"{path}{suffix}").exists() for suffix in ("-wal", "-shm")):
        # A WAL without its database must never be replayed into a fresh spool: keep it as evidence.
        moved = str(_move_aside(path))
    if seq.value is not None:
        log.critical("SPOOL MISSING: %s absent but %s exists; starting after the reservation", path, seq.path)
        return {"problem": "spool file missing while its seq reservation exists", "moved_to": moved}, False
    return None, False
