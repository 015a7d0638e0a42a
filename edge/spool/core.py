"""``Spool``: the spool as its single writer sees it: open (checks, recovery), the transaction, WAL upkeep.

The roles live in mixins: edge/spool/log.py (append, drops, markers, ack) and
edge/spool/sidetables.py (dead letters, quarantine, states, samples).

Near 400 lines: opening (checks, recovery of a damaged file or a lost WAL), the transaction and
WAL upkeep stay together because each of them reads or resets the same connection state, sidecar
marks and full-disk flags within one open. If it grows, the recovery at open (``_meta_row``,
``_after_corruption``, ``_after_lost_commits``) is the part to move to a module of its own.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from edge.spool import common
from edge.spool.ballast import Ballast
from edge.spool.common import WAL_CHECKPOINT_BYTES, WAL_TRUNCATE_BYTES, WHEN_FULL, BadRequest, SpoolFull, _is_full
from edge.spool.integrity import FULL_CHECK_MAX_BYTES, _check, inspect_file
from edge.spool.log import SpoolLog
from edge.spool.schema import _Meta, _read_meta, _refuse_newer, apply_migrations
from edge.spool.seqfile import SeqReservation, _WriterLock
from edge.spool.sidetables import SideTables
from edge.spool.stats import _stats

log = logging.getLogger("edge.spool")

class Spool(SpoolLog, SideTables):
    """The spool as its single writer sees it. Not thread-safe: one thread at a
    time (SpoolWriter's thread) calls the mutating methods."""

    def __init__(self, conn: sqlite3.Connection, path: Path, *, appliance_id: str, max_bytes: int,
                 when_full: str, max_age_s: float | None, min_free_bytes: int, seq: SeqReservation,
                 side_max_bytes: int, ballast_bytes: int):
        self._conn = conn
        self._ballast = Ballast(path, ballast_bytes)
        self._page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        self.write_failed_full = False  # the last write failed for lack of disk space (until one succeeds)
        self.disk_bound = False  # the last append found the disk, not max_bytes, limiting the spool
        self.ballast_released_now = False  # the last failure gave the ballast back: a retry can succeed
        self.side_max_bytes = side_max_bytes
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
        self._checkpoint_deferred = False
        self._drop_log = {}
        self._lock: _WriterLock | None = None
        self._pending: list[Sequence[tuple[int, bytes]]] = []  # appended in this transaction, not yet inserted
        self._pending_first = self._pending_last = 0

    @property
    def disk_full(self) -> bool:
        """The disk limits the spool now: a write failed for lack of space, or the last append had
        to drop or refuse readings because the disk (not ``max_bytes``) ran out of room."""
        return self.write_failed_full or self.disk_bound

    @property
    def disk_note(self) -> str:
        """What the writer's state line says about a full disk."""
        if self.write_failed_full:
            return "the last spool write failed: disk full"
        action = {"block": "new readings are refused", "drop_oldest": "the oldest readings are dropped",
                  "drop_newest": "new readings are dropped"}[self.when_full]
        return (f"disk full: {common._disk_free(self.path.parent)} bytes free, min_free_bytes "
                f"{self.min_free_bytes}; {action} (when_full: {self.when_full}) until space is freed")

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
        side_max_bytes: int | None = None,
        ballast_bytes: int | None = None,
    ) -> "Spool":
        """``side_max_bytes``: the part of ``max_bytes`` quarantine and dead letters may hold
        (default: an eighth of it, at least 64 KiB and at most half); past it their oldest rows go.
        ``ballast_bytes``: disk space held back in ``<spool>.ballast`` and released when the disk
        fills (edge/spool/ballast.py; default max_bytes / 32 within 1..32 MiB; 0: none)."""
        if when_full not in WHEN_FULL:
            raise BadRequest(f"when_full must be one of {WHEN_FULL}, got {when_full!r}")
        if max_bytes <= 0:
            raise BadRequest(f"max_bytes must be positive, got {max_bytes}")
        if side_max_bytes is None:
            side_max_bytes = min(max_bytes // 2, max(64 * 1024, max_bytes // 8))
        if ballast_bytes is None:
            ballast_bytes = min(32 << 20, max(1 << 20, max_bytes // 32))
        if not 0 < side_max_bytes < max_bytes:
            raise BadRequest(f"side_max_bytes must be positive and under max_bytes ({max_bytes}), "
                             f"got {side_max_bytes}")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = _WriterLock(path)
        try:
            spool = cls._open_locked(path, full_check_max_bytes, dict(
                appliance_id=appliance_id, max_bytes=max_bytes, when_full=when_full, max_age_s=max_age_s,
                min_free_bytes=min_free_bytes, side_max_bytes=side_max_bytes, ballast_bytes=ballast_bytes))
        except BaseException:
            lock.release()
            raise
        spool._lock = lock
        return spool

    @classmethod
    def _open_locked(cls, path: Path, full_check_max_bytes: int, settings: dict) -> "Spool":
        seq = SeqReservation(path)
        wal_empty = common._file_size(f"{path}-wal") == 0  # before any connection touches it
        corrupt, deferred_check = inspect_file(path, seq, full_check_max_bytes)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        version = _refuse_newer(conn)  # before any pragma rewrites the header of a file we do not understand
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute(f"PRAGMA journal_size_limit = {WAL_TRUNCATE_BYTES}")
        conn.execute("PRAGMA busy_timeout = 5000")
        if settings["ballast_bytes"]:
            # Keep what a checkpoint may still have to copy into the main file (and grow it by)
            # under half the ballast: releasing the ballast on a full disk always lets it finish.
            page = conn.execute("PRAGMA page_size").fetchone()[0]
            conn.execute(f"PRAGMA wal_autocheckpoint = {max(16, min(1000, settings['ballast_bytes'] // 2 // page))}")
        conn.execute("BEGIN IMMEDIATE")  # a new file's schema and meta row appear in one commit
        try:
            apply_migrations(conn, version)
            _existing, corrupt, lost = cls._meta_row(conn, path, seq, settings, corrupt, wal_empty)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            conn.close()
            raise
        spool = cls(conn, path, seq=seq, **settings)
        spool._ballast.ensure(common._disk_free(path.parent), settings["min_free_bytes"])
        if lost:
            spool._after_lost_commits(*lost)
        seq.ensure_above(spool._meta.next_seq)
        if corrupt:
            spool._after_corruption(corrupt)
        if deferred_check:
            spool._start_background_check()
        return spool

    @staticmethod
    def _meta_row(conn: sqlite3.Connection, path: Path, seq: SeqReservation, settings: dict,
                  corrupt: dict | None, wal_empty: bool) -> tuple[Any, dict | None, tuple[int, int] | None]:
        """Inside the open transaction: the file's meta row (created for a new spool), what damage
        the sidecar reveals (an emptied file), and a range of commits lost with the WAL."""
        appliance_id = settings["appliance_id"]
        existing = _read_meta(conn)
        if existing is not None and existing.appliance_id != appliance_id:
            raise BadRequest(
                f"spool {path} belongs to appliance {existing.appliance_id!r}, not {appliance_id!r}: "
                "seqs are per appliance; use another spool path"
            )
        if existing is None and corrupt is None and seq.value is not None:
            # The file opened as a brand-new database (e.g. truncated to 0 bytes after its
            # header was gone) though the sidecar says this spool held seqs.
            corrupt = {"problem": "spool file held no spool (empty) while its seq reservation exists",
                       "moved_to": None}
            log.critical("SPOOL EMPTY: %s has no spool in it but %s exists", path, seq.path)
        lost = None
        if (existing is not None and wal_empty and seq.committed is not None
                and existing.next_seq - 1 < seq.committed):
            lost = (existing.next_seq, seq.committed)
        if existing is None:
            start = max(1, seq.fresh_start)
            if corrupt:
                start = max(start, corrupt.get("next_seq", 1), corrupt.get("max_seq", 0) + 1)
            conn.execute(
                "INSERT INTO meta(id, appliance_id, next_seq, delivered_seq, created_ts) VALUES (1, ?, ?, ?, ?)",
                (appliance_id, start, start - 1, time.time()),
            )
        conn.execute("UPDATE meta SET max_bytes = ?, when_full = ?, side_max_bytes = ? WHERE id = 1",
                     (settings["max_bytes"], settings["when_full"], settings["side_max_bytes"]))
        return existing, corrupt, lost

    def _after_corruption(self, info: dict) -> None:
        """The old file is gone or unusable: one marker covers every seq it may have held undelivered,
        from the last known delivered seq (its own, or the sidecar's) to the fresh start."""
        start = self._meta.next_seq
        known = [d for d in (info.get("delivered_seq"), self._seq.delivered) if d is not None]
        delivered = max(known) if known else None
        known_next = info.get("next_seq")
        covered = ""
        with self._tx():
            if delivered is not None and delivered + 1 <= start - 1:
                # Everything undelivered in the old file, and the reserved seqs
                # never assigned up to the new start, is covered by one marker so
                # the seq stream stays contiguous downstream.
                lost = (known_next or start) - 1 - delivered
                self._meta.delivered_seq = delivered
                self._write_marker(delivered + 1, start - 1, "spool_corrupt", common._now_us(), extend=False)
                self._count_drop("spool_corrupt", max(0, lost))
                covered = f"; loss marker covers seq {delivered + 1}..{start - 1}"
            self._alarm(
                "spool_corrupt",
                f"spool file was unusable ({info['problem']}); moved aside to {info['moved_to']}; "
                f"fresh spool starts at seq {start}{covered}"
                + ("" if delivered is not None else "; delivered watermark unknown, undelivered readings lost"),
                {**info, "new_start_seq": start, "delivered_seq": delivered},
            )

    def _after_lost_commits(self, first: int, last: int) -> None:
        """The file ends below the sidecar's committed mark and no WAL is left: commits may have been
        lost with it (a WAL deleted after a crash). Those seqs are never reused; one marker covers them."""
        n = last - first + 1
        with self._tx():
            m = self._meta
            m.next_seq = last + 1
            m.appended_total += n
            self._write_marker(first, last, "spool_lost", common._now_us(), extend=False)
            self._count_drop("spool_lost", n)
            self._alarm(
                "spool_commits_lost",
                f"the spool file ends at seq {first - 1} but up to seq {last} may have been committed and "
                f"its WAL is gone; seq {first}..{last} are covered by a loss marker and not reused",
                {"from_seq": first, "to_seq": last},
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
            # RESTART, not TRUNCATE: the WAL keeps its allocated space for the next frames
            # (a truncated WAL hands it to whatever else is filling the disk).
            self._after_full = not self._checkpoint("RESTART")
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            yield
            self._flush_pending()
            if self._dirty:
                self._flush_meta()
            self._conn.execute("COMMIT")
            self.commits += 1
            self.write_failed_full = self.ballast_released_now = False
        except BaseException as exc:
            self._pending = []
            if self._conn.in_transaction:
                try:
                    self._conn.execute("ROLLBACK")
                except sqlite3.Error:  # the original error is re-raised below; SQLite rolls back on close
                    pass
            self._meta = _read_meta(self._conn)
            if _is_full(exc):
                # The WAL holds pages the main file has no room for yet; until a
                # checkpoint moves them, every delete makes the WAL (and the disk) fuller.
                self._after_full = True
                self.write_failed_full = True
                self.ballast_released_now = self._ballast.release()
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
            "markers_written = ?, side_bytes = ?, side_dropped_json = ? WHERE id = 1",
            (m.next_seq, m.delivered_seq, m.stored_rows, m.stored_bytes, m.appended_total, m.delivered_total,
             json.dumps(m.dropped, sort_keys=True), m.dead_lettered, m.quarantined, m.markers_written,
             m.side_bytes, json.dumps(m.side_dropped, sort_keys=True)),
        )

    def checkpoint(self, mode: str = "TRUNCATE") -> str:
        """An explicit WAL checkpoint (operator request); returns what happened."""
        if mode not in ("PASSIVE", "FULL", "RESTART", "TRUNCATE"):
            raise BadRequest(f"checkpoint mode must be PASSIVE, FULL, RESTART or TRUNCATE, not {mode!r}")
        self._flush_pending()
        before = common._file_size(f"{self.path}-wal")
        done = self._checkpoint(mode)
        after = common._file_size(f"{self.path}-wal")
        return (f"wal_checkpoint({mode}) {'completed' if done else 'partial (a reader held a snapshot)'}: "
                f"WAL {before} -> {after} bytes")

    def stats(self) -> dict:
        self._flush_pending()
        if self._dirty:  # inside the writer's transaction: let the query see this transaction's counters
            self._flush_meta()
        return _stats(self._conn, self.path)

    def maintain_wal(self, idle: bool) -> str | None:
        """Bound the WAL: PASSIVE checkpoint past WAL_CHECKPOINT_BYTES, TRUNCATE when idle past the limit."""
        self.recheck_disk()
        if not self.write_failed_full and self._ballast.wanted():
            self._ballast.ensure(common._disk_free(self.path.parent), self.min_free_bytes)
        wal = common._file_size(f"{self.path}-wal")
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
        if mode == "TRUNCATE":  # the WAL may be emptied: the sidecar's marks must not claim more than the file
            self._seq.note_exact(self._meta.next_seq - 1, self._meta.delivered_seq)
        self._conn.execute("PRAGMA busy_timeout = 100")  # a reader must not stall the writer for long
        try:
            busy, frames, done = self._conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        except sqlite3.Error as e:
            # Logged once per episode: on a full disk the writer retries every turn.
            (log.debug if self._checkpoint_deferred else log.info)("wal checkpoint %s deferred: %s", mode, e)
            self._checkpoint_deferred = True
            return False
        finally:
            self._conn.execute("PRAGMA busy_timeout = 5000")
        self._checkpoint_deferred = False
        return not busy and frames == done

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
        self._seq.note_exact(self._meta.next_seq - 1, self._meta.delivered_seq)
        try:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as e:
            log.info("final checkpoint skipped: %s", e)
        self._conn.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

