"""A ballast file next to the spool: disk space held back for the day the disk fills.

On a full disk SQLite cannot even delete: a delete writes WAL frames, and a checkpoint
may have to grow the main file before the WAL can restart. So ``drop_oldest`` would
wedge exactly when it is needed. The spool keeps ``<spool>.ballast`` (allocated, not
sparse); when a write fails for lack of space it deletes the ballast, which gives the
drop and the checkpoint room to run, and takes the space back once the disk has room
again (the ballast free above ``min_free_bytes``; until then the spool does not grow into
that room). No SQL here.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

log = logging.getLogger("edge.spool")

CHUNK = 1 << 20


class Ballast:
    def __init__(self, spool_path: Path, size: int):
        self.path = spool_path.with_name(spool_path.name + ".ballast")
        self.size = size
        self.released = 0  # how many times it was given up (stats, tests)
        self.present = self._on_disk()
        self.owed = False  # released on a full disk and not allocated again yet
        self._next_try = 0.0

    def _on_disk(self) -> bool:
        try:
            return self.path.stat().st_size >= self.size
        except OSError:
            return False

    @property
    def missing_bytes(self) -> int:
        """Room the disk shows that belongs to the ballast (released, not yet taken back). A ballast
        that never fitted owes nothing: a small disk is not made smaller by it."""
        return self.size if self.owed else 0

    def wanted(self) -> bool:
        """Missing, and not tried in the last second (the writer asks this every loop turn)."""
        if self.present or self.size <= 0 or time.monotonic() < self._next_try:
            return False
        self._next_try = time.monotonic() + 1.0
        return True

    def ensure(self, disk_free: int | None, min_free_bytes: int) -> bool:
        """Allocate the ballast when it is missing and the disk has room for it above ``min_free_bytes``."""
        if self.size <= 0 or self.present:
            return True
        self._next_try = time.monotonic() + 1.0
        if disk_free is not None and disk_free < self.size + min_free_bytes:
            return False
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            try:
                os.posix_fallocate(fd, 0, self.size)
            except OSError as e:
                if e.errno not in (95, 22):  # EOPNOTSUPP / EINVAL: a filesystem without fallocate
                    raise
                zero = b"\0" * CHUNK
                for off in range(0, self.size, CHUNK):
                    os.pwrite(fd, zero[: min(CHUNK, self.size - off)], off)
            os.fsync(fd)
        except OSError as e:
            os.close(fd)
            self.path.unlink(missing_ok=True)
            log.warning("spool ballast %s not allocated: %s", self.path, e)
            return False
        os.close(fd)
        self.present, self.owed = True, False
        log.info("spool ballast %s: %d bytes held back for a full disk", self.path, self.size)
        return True

    def release(self) -> bool:
        """Give the space back to the disk; True when there was a ballast to give."""
        self.present = False
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        self.owed = True
        self.released += 1
        log.warning("disk full: released the spool ballast %s (%d bytes) so drops and checkpoints can run",
                    self.path, self.size)
        return True
