"""What every collector gets and must honour.

A source module defines ``Config`` (a dataclass subclassing
``edge.config.SourceBase``; its fields are the YAML keys of that source type)
and ``Source``::

    class Source:
        def __init__(self, cfg: Config, ctx: SourceContext): ...
        async def run(self) -> None:   # runs until cancelled; reconnects by itself

The contract that makes loss impossible: a collector acknowledges its source
(MQTT PUBACK, HTTP 200, ...) only after ``await ctx.emit(items)`` returned. An
item is ``(collected_ts_us, body)`` with the body from ``edge.encode``. When the
spool refuses data (``SpoolFull`` under ``when_full: block``) the collector keeps
the data where it came from (no PUBACK, HTTP 503) and waits with
``ctx.wait_for_space``. Errors are reported through ``ctx.status``, never
swallowed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence

Item = tuple[int, bytes]


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
            "state": "starting",
            "detail": "",
            "readings_total": 0,
            "rate": None,  # readings/s, refreshed every >= 5 s while readings arrive
            "errors_total": 0,
            "quarantined_total": 0,
            "last_reading_ts": None,
            "last_error": None,
            "last_error_ts": None,
            "devices_offline": [],
            "since_ts": time.time(),
        }

    def set_state(self, state: str, detail: str = "") -> None:
        with self._lock:
            changed = (self.data["state"], self.data["detail"]) != (state, detail)
            self.data["state"] = state
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


@dataclass
class SourceContext:
    appliance_id: str
    data_dir: Path
    # emit: await until the items are committed; raises edge.writer's SpoolFull under block.
    emit: Callable[[Sequence[Item]], Awaitable[Any]]
    # submit: the same from a non-asyncio thread; returns a concurrent.futures.Future.
    submit: Callable[[Sequence[Item]], concurrent.futures.Future]
    # quarantine(source, reason, raw, meta) -> Future: keep a payload we could not parse.
    quarantine: Callable[[str, str, bytes, dict], concurrent.futures.Future]
    # wait_for_space(timeout_s) -> bool: await until the spool accepts data again.
    wait_for_space: Callable[[float], Awaitable[bool]]
    status: SourceStatus
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("edge.sources"))
    # Readiness/stats of other parts (e.g. forwarder streaming) for sources that report them (http).
    stats: Callable[[], dict] | None = None


async def emit_with_backpressure(ctx: SourceContext, items: Sequence[Item], *, retry_every: float = 1.0) -> Any:
    """Emit, and while the spool is full under ``block`` wait for space and retry.

    For sources that cannot push back on their device (OPC-UA, Modbus, synthetic):
    the readings stay in this coroutine's memory, and polling/subscriptions slow
    down naturally because the caller awaits here.
    """
    from edge.writer import SpoolFull  # the writer module owns the exception

    while True:
        try:
            return await ctx.emit(items)
        except SpoolFull as exc:
            ctx.status.set_state("blocked", f"spool full: {exc}")
            await ctx.wait_for_space(retry_every)
        except asyncio.CancelledError:
            raise
