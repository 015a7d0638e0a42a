"""``SourceStatus``: the counters and the state of one source, the same for every protocol.

Every source has ``state`` (an ``edge.sources.states.State``), ``detail``,
``since_ts``, ``readings_total``, ``rate``, ``errors_total``,
``quarantined_total``, ``reconnects_total``, ``last_reading_ts``,
``last_error``, ``last_error_ts``, ``devices_offline`` and the intervals it lost at
the source (``gaps_open``, ``gap_seconds``, ``gaps``: OPC-UA's back-fill sets them); a
protocol adds its own numbers with ``update``. The record is flushed to the spool's state table
(kind ``source``), which the admin page reads.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from edge.sources.states import State


def now_us() -> int:
    return time.time_ns() // 1000


class SourceStatus:
    """Counters and connection state of one source, flushed to the spool's state table.

    Thread-safe: paho and pymodbus callbacks may update it from their threads.
    ``flush`` is rate-limited so a busy source writes its state a few times a second at most.
    """

    def __init__(self, name: str, kind: str, put_state: Callable[[str, str, dict], Any] | None, min_interval: float = 1.0):
        self.name = name
        self.kind = kind
        self._put_state = put_state
        self._min_interval = min_interval
        self._lock = threading.Lock()
        self._last_flush = 0.0
        self._window_start: float | None = None
        self._window_count = 0
        self.data: dict[str, Any] = {
            "type": kind,
            "state": State.STARTING.value,
            "detail": "",
            "readings_total": 0,
            "rate": None,  # readings/s, refreshed every >= 5 s while readings arrive
            "errors_total": 0,
            "quarantined_total": 0,
            "reconnects_total": 0,
            "last_reading_ts": None,
            "last_error": None,
            "last_error_ts": None,
            "devices_offline": [],
            "gaps_open": 0,  # intervals whose values were lost at the source, since the start
            "gap_seconds": 0.0,
            "gaps": [],  # the newest: {point, start_ts, end_ts, seconds, reason}
            "since_ts": time.time(),
        }

    @property
    def state(self) -> State:
        return State(self.data["state"])

    def set_state(self, state: State | str, detail: str = "") -> None:
        try:
            state = State(state)
        except ValueError:
            raise ValueError(f"{state!r} is not a source state; add it to edge.sources.states.State") from None
        with self._lock:
            changed = (self.data["state"], self.data["detail"]) != (state.value, detail)
            self.data["state"] = state.value
            self.data["detail"] = detail
            if changed:
                self.data["since_ts"] = time.time()
        if changed:
            self.flush(force=True)

    def readings(self, n: int) -> None:
        now = time.time()
        with self._lock:
            self.data["readings_total"] += n
            self.data["last_reading_ts"] = now
            # readings/s over windows of >= 5 s, so the page needs no second observation
            if self._window_start is None:
                self._window_start, self._window_count = now, 0
            self._window_count += n
            if now - self._window_start >= 5.0:
                self.data["rate"] = round(self._window_count / (now - self._window_start), 3)
                self._window_start, self._window_count = now, 0
        self.flush()

    def error(self, message: str) -> None:
        with self._lock:
            self.data["errors_total"] += 1
            self.data["last_error"] = message[:500]
            self.data["last_error_ts"] = time.time()
        self.flush(force=True)

    def quarantined(self, n: int = 1) -> None:
        with self._lock:
            self.data["quarantined_total"] += n
        self.flush()

    def reconnected(self) -> None:
        """A connection came up again after one was lost (the first connect does not count)."""
        with self._lock:
            self.data["reconnects_total"] += 1
        self.flush()

    def update(self, **values: Any) -> None:
        with self._lock:
            self.data.update(values)
        self.flush()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(self.data)

    def flush(self, force: bool = False) -> None:
        if self._put_state is None:
            return
        t = time.monotonic()
        with self._lock:
            if not force and t - self._last_flush < self._min_interval:
                return
            self._last_flush = t
            snap = dict(self.data)
        try:
            self._put_state("source", self.name, snap)
        except Exception:  # the state table is for display; never let it stop collection
            logging.getLogger(__name__).exception("could not record state of source %s", self.name)
