"""One short look at the spool per request: the only I/O the page does.

Each ``SpoolReader`` call is its own brief read transaction (see edge/spool/reader.py),
so the admin page never pins a WAL snapshot; the connection lives for one
request and is closed before rendering starts.
"""

from __future__ import annotations

import threading
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


# Samples are append-only (old ones are only trimmed), so each worker keeps what it has read and
# asks the spool only for newer ones: a 6 h chart would otherwise re-read ~10k rows every refresh.
_cache: dict[str, tuple[float, list[dict]]] = {}  # path -> (covers samples from this ts on, samples)
_cache_lock = threading.Lock()


def _samples_since(r, spool_path: str, since_ts: float) -> list[dict]:
    with _cache_lock:
        covered, cached = _cache.get(spool_path, (float("inf"), []))
    have = [x for x in cached if x["ts"] >= since_ts] if covered <= since_ts else []
    start = have[-1]["ts"] if have else since_ts
    fresh = [x for x in model.normalize_samples(r.samples(start)) if not have or x["ts"] > start]
    if have and fresh and fresh[0]["in"] is not None and have[-1]["in"] is not None and fresh[0]["in"] < have[-1]["in"]:
        # Counters went backwards: a new spool file. Its history starts now.
        have = []
    out = have + fresh
    with _cache_lock:
        _cache[spool_path] = (since_ts, out)
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
                snap.samples = _thin(_samples_since(r, spool_path, since_ts), MAX_CHART_POINTS)
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


def read_states(spool_path: str, kind: str, timeout: float = 2.0) -> tuple[dict[str, dict], str | None]:
    """The state records of one kind, name -> record; an error instead of a 500."""
    from edge.spool import SpoolReader

    try:
        with SpoolReader(spool_path, timeout=timeout) as r:
            return model.normalize_states(r.states(kind)), None
    except Exception as exc:  # noqa: BLE001
        return {}, f"{type(exc).__name__}: {exc}"[:300]
