"""What the forwarder tells people: counters, the state, recent errors, egress cuts, persisted ~1/s.

Every figure lives here behind one lock; the loop reports events (a batch acked, a
failure, caught up) and ``snapshot()`` renders the JSON-able dict the admin page and
``/metrics`` read (its keys are documented on ``Forwarder.state``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger("edge.forwarder")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
RECENT_ERRORS = 20
RECENT_CUTS = 20
PERSIST_MIN_INTERVAL = 1.0
HEARTBEAT_INTERVAL = 10.0


@dataclass
class Cut:
    """One egress outage: from the first failure after a healthy period until caught up again."""

    started_ts: float
    backlog_start: int
    backlog_peak: int = 0
    recovered_ts: float | None = None
    drained_ts: float | None = None
    errors: int = 0

    def as_dict(self) -> dict:
        return {
            "started_ts": self.started_ts,
            "outage_s": None if self.recovered_ts is None else round(self.recovered_ts - self.started_ts, 3),
            "recovered_ts": self.recovered_ts,
            "drained_ts": self.drained_ts,
            "drain_s": None if self.drained_ts is None or self.recovered_ts is None
            else round(self.drained_ts - self.recovered_ts, 3),
            "backlog_start": self.backlog_start,
            "backlog_peak": self.backlog_peak,
            "errors": self.errors,
        }


@dataclass
class Counters:
    acked: int = 0
    sent: int = 0
    resent: int = 0
    dead_lettered: int = 0
    batches_acked: int = 0
    stream_creations: int = 0
    failures: int = 0
    throttled: int = 0
    rotations: int = 0
    cuts: int = 0
    latency_counts: list = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    latency_sum: float = 0.0


class Telemetry:
    """Counters and state of one forwarder; thread-safe; ``persist()`` writes it to the spool."""

    def __init__(self, put_state: Callable[[dict], Any], static: Callable[[], dict]):
        self._put_state = put_state
        self._static = static  # figures owned by others (config, backoff, pace), read at snapshot time
        self.lock = threading.Lock()
        self.c = Counters()
        self.state = "starting"
        self.reason = ""
        self.since = time.time()
        self.started_ts: float | None = None
        self.last_ack_ts: float | None = None
        self.last_ack_seq: int | None = None
        self.stalled_since: float | None = None  # epoch s: the last sign of life before a stall
        self.acked_hi = 0
        self.sent_hi = 0
        self.inflight = 0
        self.healthy = False
        self.errors: deque = deque(maxlen=RECENT_ERRORS)
        self.cuts: deque = deque(maxlen=RECENT_CUTS)
        self.cut: Cut | None = None
        self._last_persist = 0.0
        self._dirty = True

    # ------------------------------------------------------------- events

    def set_inflight(self, n: int) -> None:
        with self.lock:
            self.inflight = n

    def sent(self, rows: int, last_seq: int, resend: bool) -> None:
        with self.lock:
            if resend:
                self.c.resent += rows
            else:
                self.c.sent += rows
            self.sent_hi = max(self.sent_hi, last_seq)

    def stream_opened(self) -> None:
        with self.lock:
            self.c.stream_creations += 1

    def acked(self, count: int, last_seq: int, latency: float) -> bool:
        """A batch acked; True if it is the first ack after a failure (the caller resets its backoff)."""
        with self.lock:
            c = self.c
            c.acked += count
            c.batches_acked += 1
            c.latency_sum += latency
            for i, bound in enumerate(LATENCY_BUCKETS):
                if latency <= bound:
                    c.latency_counts[i] += 1
                    break
            else:
                c.latency_counts[-1] += 1
            self.acked_hi = max(self.acked_hi, last_seq)
            self.last_ack_seq = last_seq
            self.last_ack_ts = time.time()
            self.stalled_since = None
            self._dirty = True
            if self.healthy:
                return False
            self.healthy = True
            if self.cut is not None and self.cut.recovered_ts is None:
                self.cut.recovered_ts = time.time()
            return True

    def caught_up(self) -> None:
        with self.lock:
            self.healthy = True
            if self.cut is not None:
                now = time.time()
                if self.cut.recovered_ts is None:
                    self.cut.recovered_ts = now
                self.cut.drained_ts = now
                self.cuts.append(self.cut)
                self.cut = None

    def failed(self, phase: str, kind: str, reason: str, *, routine: bool, backlog: Callable[[], int]) -> None:
        """A session failed. ``routine`` (a rotation or a throttle) neither starts a cut nor ends health."""
        starts_cut = self.healthy and self.cut is None and phase != "idle" and not routine
        depth = backlog() if starts_cut else 0
        with self.lock:
            self.c.failures += 1
            self.inflight = 0
            self.errors.append({"ts": time.time(), "phase": phase, "kind": kind, "reason": reason})
            if starts_cut:
                self.c.cuts += 1
                self.cut = Cut(started_ts=time.time(), backlog_start=depth, backlog_peak=depth)
            if self.cut is not None:
                self.cut.errors += 1
            self.healthy = self.healthy and routine
            self._dirty = True

    def stalled(self, since_ts: float, reason: str, backlog: Callable[[], int]) -> None:
        """No ack for a stall interval, batches in flight: the state says ``stalled`` and a cut opens,
        dated ``since_ts`` (the last ack, or the send of the oldest unacked batch if later); the
        next ack closes it as recovered, a failure of the streams goes on with the same cut."""
        starts_cut = self.healthy and self.cut is None
        depth = backlog() if starts_cut else 0
        with self.lock:
            self.stalled_since = since_ts
            if starts_cut:
                self.c.cuts += 1
                self.cut = Cut(started_ts=since_ts, backlog_start=depth, backlog_peak=depth)
            self.healthy = False
            self._dirty = True
        self.set_state("stalled", reason)

    def count(self, name: str, n: int = 1) -> None:
        with self.lock:
            setattr(self.c, name, getattr(self.c, name) + n)
            self._dirty = True

    def error(self, phase: str, kind: str, reason: str) -> None:
        with self.lock:
            self.errors.append({"ts": time.time(), "phase": phase, "kind": kind, "reason": reason})
            self._dirty = True

    def cut_backlog(self, depth: int) -> None:
        with self.lock:
            if self.cut is not None:
                self.cut.backlog_peak = max(self.cut.backlog_peak, self.cut.backlog_start, depth)
                self._dirty = True

    def set_state(self, state: str, reason: str) -> None:
        with self.lock:
            if state == self.state and reason == self.reason:
                return
            routine = {state, self.state} <= {"idle", "streaming"}
            self.state, self.reason, self.since = state, reason, time.time()
            self._dirty = True
        # Trickling data flips idle <-> streaming many times a second: those go out with
        # the ~1/s persistence; every other transition is written at once.
        self.persist(force=not routine)

    def mark_dirty(self) -> None:
        self._dirty = True

    # ------------------------------------------------------------- output

    def persist(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force:
            gap = now - self._last_persist
            if gap < PERSIST_MIN_INTERVAL or (not self._dirty and gap < HEARTBEAT_INTERVAL):
                return
        self._last_persist = now
        self._dirty = False
        try:
            self._put_state(self.snapshot())
        except Exception as exc:  # the state is advisory; never let it stop delivery
            log.debug("could not persist forwarder state: %s", exc)

    def snapshot(self) -> dict:
        static = self._static()
        with self.lock:
            c = self.c
            cum, buckets = 0, []
            for bound, n in zip(list(LATENCY_BUCKETS) + ["+Inf"], c.latency_counts):
                cum += n
                buckets.append([bound, cum])
            cuts = [x.as_dict() for x in self.cuts]
            if self.cut is not None:
                cuts.append({**self.cut.as_dict(), "open": True})
            return {
                "state": self.state,
                "reason": self.reason,
                "since": self.since,
                "started_ts": self.started_ts,
                "updated_ts": time.time(),
                **static,
                "last_ack_ts": self.last_ack_ts,
                "last_ack_seq": self.last_ack_seq,
                "stalled_since": self.stalled_since,
                "acked_seq": self.acked_hi,
                "sent_seq": self.sent_hi,
                "acked_total": c.acked,
                "sent_total": c.sent,
                "resent_total": c.resent,
                "dead_lettered_total": c.dead_lettered,
                "batches_acked_total": c.batches_acked,
                "batches_in_flight": self.inflight,
                "stream_creations_total": c.stream_creations,
                "failures_total": c.failures,
                "throttled_total": c.throttled,
                "rotations_total": c.rotations,
                "recent_errors": list(self.errors),
                "ack_latency_buckets": buckets,
                "ack_latency_sum": round(c.latency_sum, 6),
                "ack_latency_count": c.batches_acked,
                "egress_cuts_total": c.cuts,
                "egress_cuts": cuts,
            }
