"""Sidecar files next to the spool: the writer lock and the seq reservation."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from edge.spool.common import SpoolError, _fsync_dir

SEQ_BLOCK = 1_000_000

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

