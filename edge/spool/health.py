"""The spool writer's health as one state line, not a traceback every loop turn.

States: ``ok``, ``disk_full`` (a write failed for lack of disk space), ``error`` (a
maintenance step keeps failing). The first failure of a kind is logged (with its
traceback unless it is a full disk), then at most one line per LOG_EVERY_S with the
count; the state returns to ``ok`` after RECOVER_S without a failure, with one line.
The state is stored as ``state('spool', 'writer')`` for the admin page and
``edge spool stats`` (``writer_state``). No SQL here.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from edge.spool.common import SpoolFull

log = logging.getLogger("edge.writer")

LOG_EVERY_S = 60.0
RECOVER_S = 5.0
RECORD_EVERY_S = 1.0


class WriterHealth:
    def __init__(self, spool: Any):
        self.spool = spool
        self.state = "ok"
        self.error: str | None = None
        self.since: float | None = None
        self.failures = 0  # since the state was entered
        self._unlogged = 0
        self._logged_at = self._failed_at = self._record_at = 0.0
        self._recorded: str | None = None  # nothing stored yet: the first turn stores the state line

    @property
    def changed(self) -> bool:
        return self._recorded != self.state and time.monotonic() >= self._record_at

    def failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        full = (isinstance(exc, SpoolFull) and exc.cause == "disk_full") or self.spool.disk_full
        state = "disk_full" if full else "error"
        note = getattr(self.spool, "disk_note", None) if self.spool.disk_full else None
        text = (note or f"{type(exc).__name__}: {exc}")[:300]
        self._failed_at = now
        self.failures += 1
        if state != self.state:
            self.state, self.error, self.since, self.failures, self._unlogged = state, text, time.time(), 1, 0
            self._logged_at = now
            if full:
                log.error("spool writer: disk full (%s); retrying, drops and checkpoints run in the ballast's room",
                          text)
            else:
                log.error("spool maintenance step failed: %s; retrying", text, exc_info=exc)
            return
        self.error = text
        self._unlogged += 1
        if now - self._logged_at >= LOG_EVERY_S:
            log.error("spool writer still %s: %s (%d more failures in %.0fs)", state, text, self._unlogged,
                      now - self._logged_at)
            self._logged_at, self._unlogged = now, 0

    def ok(self) -> None:
        if self.state != "ok" and time.monotonic() - self._failed_at >= RECOVER_S:
            log.warning("spool writer recovered from %s after %d failures", self.state, self.failures)
            self.state, self.error, self.since, self.failures = "ok", None, time.time(), 0

    def record(self, put_state: Callable[[str, str, Any], None]) -> None:
        """Store the state line (best effort: on a full disk it is tried again a second later)."""
        self._record_at = time.monotonic() + RECORD_EVERY_S
        value = {"state": self.state, "error": self.error, "since": self.since, "failures": self.failures,
                 # readers judge a disk too full to write the state line by the same threshold (stats.py)
                 "min_free_bytes": getattr(self.spool, "min_free_bytes", 0)}
        try:
            put_state("spool", "writer", value)
        except Exception as exc:  # noqa: BLE001 - the state it failed to store stays pending
            log.debug("spool writer state not stored yet: %s", exc)
            return
        self._recorded = value["state"]
