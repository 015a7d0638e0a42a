"""The forwarder's side of the spool: read rows under protection, record acks, measure the backlog.

The spool's drop_oldest deletes the oldest undelivered rows, exactly the ones we read
next, and replaces them by a loss marker at the first dropped seq. A row must therefore be
protected (``writer.set_protected``, applied on the writer thread) BEFORE we read it:
otherwise a drop between our peek and the send could put a marker covering seqs beyond
our batch inside it, and our ack would delete that marker undelivered. So the bound is
requested one batch ahead, waited for before the peek, and a batch is cut at the bound.

Acks are coalesced: the last seqs of batches the service acked wait in ``unrecorded``
and one ``writer.ack()`` at a time covers all of them (an ack is a delete + fsync:
coalescing keeps the spool's commit rate from capping the drain rate).
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections import deque
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Callable

from edge.forward.sink import Failure
from edge.outcome import Retry

log = logging.getLogger("edge.forwarder")

WAIT_SLICE = 0.25
PROTECT_TIMEOUT = 30.0


class Stopped(Exception):
    """stop() was called: leave the loop."""


class SpoolSide:
    def __init__(self, writer: Any, reader: Any, stop: threading.Event, batch_bytes: int,
                 on_error: Callable[[str, str], None]):
        self.writer = writer
        self.reader = reader
        self._stop = stop
        self.batch_bytes = batch_bytes
        self._on_error = on_error
        self.protected = 0  # bound applied by the writer
        self._protect_requested = 0
        self._protect_future: Any = None
        self._protect_future_seq = 0
        self.unrecorded: deque[int] = deque()
        self._ack_future: Any = None
        self._ack_future_seq = 0
        self.ack_error = ""
        self._backlog = 0
        self.backlog_ts = 0.0

    # ------------------------------------------------------------ protection

    def peek_protected(self, after: int, limit_rows: int) -> list:
        for _ in range(3):
            self._ensure_protected(after + limit_rows)
            rows = self.reader.peek(after, limit_rows, self.batch_bytes)
            if not rows or rows[-1][0] <= self.protected:
                break
            # Gaps (loss markers cover seq ranges): keep only what the bound covers.
            keep = bisect.bisect_right([seq for seq, _ in rows], self.protected)
            if keep:
                rows = rows[:keep]
                break
            after = rows[0][0] - 1
        else:
            return []
        if rows:
            self._request_protection(rows[-1][0] + limit_rows)  # pipelined for the next batch
        return rows

    def _request_protection(self, seq: int) -> None:
        if seq <= self._protect_requested:
            return
        self._settle_protection(0.0)
        if self._protect_future is None:
            self._protect_future = self.writer.set_protected(seq)
            self._protect_future_seq = seq
            self._protect_requested = seq

    def _settle_protection(self, timeout: float) -> None:
        fut = self._protect_future
        if fut is None:
            return
        try:
            fut.result(timeout=timeout)
        except FutureTimeout:
            return
        except Exception as exc:
            self._protect_future = None
            self._protect_requested = self.protected
            raise Failure(Retry(f"spool writer refused set_protected: {exc}"), "internal") from None
        self._protect_future = None
        self.protected = max(self.protected, self._protect_future_seq)

    def _ensure_protected(self, seq: int) -> None:
        deadline = time.monotonic() + PROTECT_TIMEOUT
        while self.protected < seq:
            self._request_protection(seq)
            self._settle_protection(min(WAIT_SLICE, max(0.0, deadline - time.monotonic())))
            if self._stop.is_set():
                raise Stopped()
            if time.monotonic() > deadline and self.protected < seq:
                raise Failure(Retry(f"spool writer did not apply set_protected within {PROTECT_TIMEOUT:g}s"), "internal")

    def lower_protection(self, seq: int) -> None:
        """Nothing is in flight beyond ``seq`` any more: let drop_oldest have the rest."""
        self._protect_future = None
        self.protected = min(self.protected, seq)
        self._protect_requested = seq
        try:
            self.writer.set_protected(seq)
        except Exception as exc:  # the writer is closing: the next session re-protects anyway
            log.debug("set_protected(%d) failed: %s", seq, exc)

    # ------------------------------------------------------------------ acks

    def record_acks(self) -> None:
        """Settle the writer.ack in progress; start one covering every acked batch not yet recorded."""
        fut = self._ack_future
        if fut is not None:
            if not fut.done():
                return
            self._ack_future = None
            exc = fut.exception()
            if exc is None:
                while self.unrecorded and self.unrecorded[0] <= self._ack_future_seq:
                    self.unrecorded.popleft()
                self.ack_error = ""
            else:
                # The watermark did not move: those rows stay and may be resent (duplicates,
                # never loss). Retried with the next ack; logged once per distinct error.
                text = f"ack not recorded in the spool: {type(exc).__name__}: {exc}"
                if text != self.ack_error:
                    self.ack_error = text
                    self._on_error("spool", text)
        if self.unrecorded:
            self._ack_future_seq = self.unrecorded[-1]
            self._ack_future = self.writer.ack(self._ack_future_seq)

    def unsettled(self) -> int:
        self.record_acks()
        return len(self.unrecorded)

    def wait_recorded(self, timeout: float) -> None:
        """Nothing in flight but acks not yet in the spool: give the writer a moment."""
        fut = self._ack_future
        if fut is not None:
            try:
                fut.result(timeout=timeout)
            except Exception:  # recorded as an error by record_acks; pause before the retry
                self._stop.wait(timeout)
        self.record_acks()

    def drain_acks(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.unrecorded and time.monotonic() < deadline:
            self.record_acks()
            fut = self._ack_future
            if fut is None:
                break
            try:
                fut.result(timeout=max(0.0, deadline - time.monotonic()))
            except Exception:  # record_acks reports it; stop waiting on a failing writer
                break
            if self.ack_error:
                break

    # --------------------------------------------------------------- backlog

    def backlog(self) -> int:
        try:
            self._backlog = int(self.reader.stats().get("depth_rows") or 0)
        except Exception as exc:  # advisory figure: keep the last one
            log.debug("spool stats failed: %s", exc)
        self.backlog_ts = time.monotonic()
        return self._backlog
