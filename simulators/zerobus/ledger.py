"""In-memory accounting behind ``GET /stats``: rows, duplicates, seq coverage and loss markers.

Updated incrementally after every commit (so /stats stays cheap with 10M+ rows)
and rebuilt from the store at start. Thread-safe: the store's writer thread
updates it, the event loop reads snapshots.
"""

from __future__ import annotations

import threading
from typing import Any, Iterable

from .intervals import IntervalSet


class ApplianceLedger:
    __slots__ = ("seen", "markers", "loss_rows")

    def __init__(self) -> None:
        self.seen = IntervalSet()
        self.markers = IntervalSet()  # seqs covered by loss markers (loss_from_seq..loss_to_seq)
        self.loss_rows = 0

    def snapshot(self) -> dict[str, Any]:
        missing = self.seen.gaps()
        unexplained = self.markers.uncovered(missing)
        return {
            "min_seq": self.seen.min,
            "max_seq": self.seen.max,
            "missing": missing,
            "unexplained_missing": unexplained,
            "missing_count": sum(b - a + 1 for a, b in missing),
            "unexplained_missing_count": sum(b - a + 1 for a, b in unexplained),
            "loss_markers": self.loss_rows,
            "readings_covered_by_markers": self.markers.count(),
        }


class TableLedger:
    def __init__(self) -> None:
        self.rows = 0
        self.unique = 0
        self.batches = 0
        self.streams_opened = 0
        self.last_ingest_us: int | None = None
        self.appliances: dict[str, ApplianceLedger] = {}

    def appliance(self, app: str) -> ApplianceLedger:
        led = self.appliances.get(app)
        if led is None:
            led = self.appliances[app] = ApplianceLedger()
        return led

    def snapshot(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "unique": self.unique,
            "duplicates": self.rows - self.unique,
            "batches": self.batches,
            "streams_opened": self.streams_opened,
            "last_ingest_us": self.last_ingest_us,
            "appliances": {app: led.snapshot() for app, led in sorted(self.appliances.items())},
        }


def _runs(seqs: list[int]) -> list[tuple[int, int]]:
    """Sorted seqs -> inclusive runs of consecutive values (duplicates folded)."""
    out: list[tuple[int, int]] = []
    start = prev = seqs[0]
    for s in seqs[1:]:
        if s <= prev + 1:
            prev = max(prev, s)
            continue
        out.append((start, prev))
        start = prev = s
    out.append((start, prev))
    return out


class Ledger:
    def __init__(self, tables: Iterable[str] = ()):
        self._lock = threading.Lock()
        self._tables: dict[str, TableLedger] = {t: TableLedger() for t in tables}

    def table(self, name: str) -> TableLedger:
        led = self._tables.get(name)
        if led is None:
            led = self._tables[name] = TableLedger()
        return led

    def stream_opened(self, table: str) -> None:
        with self._lock:
            self.table(table).streams_opened += 1

    def observe(
        self,
        table: str,
        apps: list[Any],
        seqs: list[Any],
        kinds: list[Any],
        extra: dict[int, tuple[Any, Any]],
        ingest_us: int,
    ) -> None:
        """Account for one committed batch."""
        n = len(seqs)
        if not n:
            return
        with self._lock:
            tl = self.table(table)
            tl.rows += n
            tl.batches += 1
            tl.last_ingest_us = ingest_us
            first_app = apps[0]
            if first_app is not None and apps.count(first_app) == n and seqs[0] is not None:
                groups = {first_app: seqs}
            else:
                groups = {}
                keyless = 0
                for app, seq in zip(apps, seqs):
                    if app is None or seq is None:
                        keyless += 1
                    else:
                        groups.setdefault(app, []).append(seq)
                tl.unique += keyless
            for app, group in groups.items():
                led = tl.appliance(app)
                s0 = group[0]
                if group[-1] - s0 == len(group) - 1 and group == list(range(s0, s0 + len(group))):
                    tl.unique += led.seen.add(s0, group[-1])
                else:
                    for a, b in _runs(sorted(group)):
                        tl.unique += led.seen.add(a, b)
            for i, (lo, hi) in extra.items():
                if kinds[i] == "loss" and apps[i] is not None:
                    led = tl.appliance(apps[i])
                    led.loss_rows += 1
                    if lo is not None and hi is not None:
                        led.markers.add(lo, hi)

    def load(self, table: str, rows: int, keyless: int, islands: Iterable[tuple[str, int, int]], markers: Iterable[tuple[str, int, int]], marker_rows: dict[str, int]) -> None:
        """Rebuild one table from the store (islands of seen seqs per appliance, marker ranges)."""
        with self._lock:
            tl = self.table(table)
            tl.rows = rows
            tl.unique = keyless
            for app, a, b in islands:
                tl.unique += tl.appliance(app).seen.add(a, b)
            for app, a, b in markers:
                tl.appliance(app).markers.add(a, b)
            for app, n in marker_rows.items():
                tl.appliance(app).loss_rows = n

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"tables": {name: tl.snapshot() for name, tl in sorted(self._tables.items())}}
