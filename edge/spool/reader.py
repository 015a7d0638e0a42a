"""``SpoolReader``: the read-only view for other threads and processes."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

from edge.spool.common import SpoolError, _ro_uri
from edge.spool.queries import _dead_letters, _peek, _quarantined, _samples, _states
from edge.spool.stats import _disk_full_detail, _stats, with_disk_state

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
        """State records. A source collecting while the spool's disk is full is shown as
        ``disk_full`` (edge/spool/stats.py ``with_disk_state``): on a full disk the source
        cannot store that state itself."""
        with self._lock:
            records = _states(self._conn, kind)
            if kind in (None, "source"):
                records = with_disk_state(records, _disk_full_detail(self._conn, self.path))
            return records

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
