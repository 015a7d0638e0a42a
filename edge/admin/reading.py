"""One short look at the spool per request: the only I/O the page does.

Each ``SpoolReader`` call is its own brief read transaction (see edge/spool.py),
so the admin page never pins a WAL snapshot; the connection lives for one
request and is closed before rendering starts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from edge.admin import model

MAX_CHART_POINTS = 360


@dataclass
class Snapshot:
    stats: dict = field(default_factory=dict)
    states: dict[str, dict[str, dict]] = field(default_factory=dict)
    samples: list[dict] = field(default_factory=list)
    error: str | None = None
    read_ms: float = 0.0


def _thin(samples: list[dict], n: int) -> list[dict]:
    """Keep about ``n`` samples, always the last; max depth per bucket so a peak is never thinned away."""
    if len(samples) <= n:
        return samples
    step = len(samples) / n
    out, i = [], 0.0
    while int(i) < len(samples):
        bucket = samples[int(i):int(i + step) or int(i) + 1]
        top = max(bucket, key=lambda s: s["depth"] or 0)
        out.append({**bucket[-1], "depth": top["depth"], "bytes": top["bytes"]})
        i += step
    if out[-1]["ts"] != samples[-1]["ts"]:
        out.append(samples[-1])
    return out


def read(spool_path: str, *, since_ts: float | None = None, timeout: float = 2.0) -> Snapshot:
    """Stats, every state record and (when ``since_ts``) chart samples; errors become ``Snapshot.error``."""
    from edge.spool import SpoolError, SpoolReader

    t0 = time.perf_counter()
    snap = Snapshot()
    try:
        with SpoolReader(spool_path, timeout=timeout) as r:
            snap.stats = r.stats()
            by_kind: dict[str, list] = {}
            for rec in r.states():
                by_kind.setdefault(rec.get("kind"), []).append(rec)
            snap.states = {k: model.normalize_states(v) for k, v in by_kind.items()}
            if since_ts is not None:
                snap.samples = _thin(model.normalize_samples(r.samples(since_ts)), MAX_CHART_POINTS)
    except (SpoolError, OSError, Exception) as exc:  # noqa: BLE001 - any failure is shown, never a 500
        snap.error = f"{type(exc).__name__}: {exc}"[:300]
    snap.read_ms = (time.perf_counter() - t0) * 1000
    return snap


def read_items(spool_path: str, what: str, limit: int, timeout: float = 2.0) -> tuple[list[Any], str | None]:
    from edge.spool import SpoolReader

    try:
        with SpoolReader(spool_path, timeout=timeout) as r:
            rows = r.dead_letters(limit) if what == "dead_letters" else r.quarantined(limit)
        return rows, None
    except Exception as exc:  # noqa: BLE001
        return [], f"{type(exc).__name__}: {exc}"[:300]
