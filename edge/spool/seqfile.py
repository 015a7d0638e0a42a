"""Sidecar files next to the spool: the writer lock and the seq reservation (with the delivered mark)."""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
from pathlib import Path

from edge.fsutil import write_atomic
from edge.spool.common import SpoolError

log = logging.getLogger("edge.spool")

SEQ_BLOCK = 1_000_000
COMMIT_STEP = 20_000  # the committed mark runs at most this far ahead of the last commit
RECORD_BYTES = 256  # the sidecar's record rewritten in place on a full disk: within one 512-byte sector
DELIVERED_STEP = 10_000  # the delivered mark lags the watermark by at most this (plus one ack)

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
    """Sidecar ``<spool>.seq``: what must outlive the spool file, so that a lost, emptied,
    truncated or unreadable spool (or its lost WAL) becomes a loss marker, never a reused seq
    or a silent gap. One small JSON object, replaced atomically (fsync, rename, fsync dir):

    * ``reserved``: no assigned seq ever reaches it; moved SEQ_BLOCK ahead before the
      transaction that crosses it commits.
    * ``committed``: no committed seq is above it; moved COMMIT_STEP ahead before a commit
      crosses it, and set exact (next_seq - 1) on a clean close and before a TRUNCATE
      checkpoint, so a clean restart finds it equal to the file's last seq.
    * ``delivered``: a seq the cloud acknowledged; rewritten once the watermark moved
      DELIVERED_STEP past it, and exact on close. A lower bound of the real watermark.

    A file holding a bare integer (the format before) reads as ``reserved`` alone.
    """

    def __init__(self, spool_path: Path):
        self.path = spool_path.with_name(spool_path.name + ".seq")
        self.value, self.committed, self.delivered = self.read()

    def read(self) -> tuple[int | None, int | None, int | None]:
        try:
            text = self.path.read_text().strip()
        except FileNotFoundError:
            return None, None, None
        except OSError as e:
            log.error("seq reservation %s unreadable (%s): starting without it", self.path, e)
            return None, None, None
        try:
            if not text.startswith("{"):
                return int(text), None, None
            d = json.loads(text)
            return (int(d["reserved"]), *(None if d.get(k) is None else int(d[k]) for k in ("committed", "delivered")))
        except (ValueError, KeyError, TypeError) as e:
            log.error("seq reservation %s unreadable (%s): starting without it", self.path, e)
            return None, None, None

    @property
    def fresh_start(self) -> int:
        """Where a spool with no usable file starts: above every seq that may have been committed."""
        if self.committed is not None:
            return self.committed + 1
        return self.value or 1

    def ensure_above(self, seq: int) -> None:
        """Make sure every seq < ``seq`` lies below the reservation and within the committed mark."""
        reserved_ok = self.value is not None and seq < self.value
        committed_ok = self.committed is not None and seq - 1 <= self.committed
        if reserved_ok and committed_ok:
            return
        value = self.value if reserved_ok else seq + SEQ_BLOCK
        self._write(value, min(seq - 1 + COMMIT_STEP, value - 1), self.delivered)

    def note_delivered(self, delivered: int) -> None:
        """The watermark moved; kept on disk once it moved DELIVERED_STEP (best effort: a lag is safe)."""
        if self.delivered is None or delivered - self.delivered >= DELIVERED_STEP:
            self._best_effort(self.value, self.committed, delivered)

    def note_exact(self, last_seq: int, delivered: int) -> None:
        """Clean close, or a TRUNCATE checkpoint about to empty the WAL: the marks become exact."""
        if (self.committed, self.delivered) != (last_seq, delivered) and self.value is not None:
            self._best_effort(self.value, last_seq, delivered)

    def _best_effort(self, value: int | None, committed: int | None, delivered: int | None) -> None:
        try:
            self._write(value, committed, delivered)
        except OSError as e:  # a full disk: the older marks on disk are still true bounds
            log.warning("seq reservation %s not updated: %s", self.path, e)

    def _write(self, value: int | None, committed: int | None, delivered: int | None) -> None:
        data = (json.dumps({"reserved": value, "committed": committed, "delivered": delivered}) + "\n").encode()
        try:
            write_atomic(self.path, data, 0o644)
        except OSError as e:
            if e.errno != errno.ENOSPC or not self._overwrite(data):
                raise
        self.value, self.committed, self.delivered = value, committed, delivered

    def _overwrite(self, data: bytes) -> bool:
        """A full disk has no block for a temp file: rewrite the sidecar in place instead, in one
        write of a fixed-size record within its first sector (padded with spaces, which read() strips)."""
        if len(data) > RECORD_BYTES:
            return False
        try:
            fd = os.open(self.path, os.O_WRONLY)
        except OSError:
            return False
        try:
            os.pwrite(fd, data.ljust(RECORD_BYTES, b" "), 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        log.warning("seq reservation %s rewritten in place (disk full)", self.path)
        return True
