"""What every part of the spool shares: its errors, the append result, limits and small file helpers.

No SQL here (edge/spool/README.md has the map of the package).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import sqlite3
import time
import urllib.parse
from pathlib import Path

WHEN_FULL = ("block", "drop_oldest", "drop_newest")
SQLITE_FULL = 13
WAL_CHECKPOINT_BYTES = 16 * 1024 * 1024
WAL_TRUNCATE_BYTES = 64 * 1024 * 1024


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

