"""Pure spool arithmetic: budget fit, drop planning, rates, runway and drain ETA.

No I/O here, so every rule the spool applies to a full disk or a slow link can
be tested exhaustively and fast (tests/spool/test_budget.py).
"""

from __future__ import annotations

from typing import Iterable, Sequence

# Bytes charged per stored row on top of its body: rowid, ts, record header and
# b-tree cell overhead. A constant (not the file size) keeps the budget exact,
# cheap to track in `meta`, and independent of free pages in the file.
ROW_OVERHEAD = 32


def batch_bytes(bodies_total: int, rows: int) -> int:
    return bodies_total + rows * ROW_OVERHEAD


def effective_budget(max_bytes: int, used_bytes: int, disk_free: int | None, min_free_bytes: int) -> int:
    """Budget after counting the disk: when free space would fall under
    ``min_free_bytes``, the spool may only grow by what is left above it.

    Rows deleted by a drop free pages that SQLite reuses, so ``drop_oldest`` under
    a full disk keeps working: the cap is the bytes in use now plus the headroom.
    """
    if disk_free is None:
        return max_bytes
    headroom = max(0, disk_free - min_free_bytes)
    return min(max_bytes, used_bytes + headroom)


def fits(used_bytes: int, incoming_bytes: int, budget_bytes: int) -> bool:
    return used_bytes + incoming_bytes <= budget_bytes


def rows_to_drop(candidates: Iterable[tuple[int, int]], need_bytes: int) -> tuple[int, int]:
    """Oldest-first candidates ``(seq, charged_bytes)``: how many to drop to free
    ``need_bytes``. Returns ``(count, freed_bytes)``; count may cover every
    candidate and still free less than needed (the caller then drops the batch).
    """
    count = freed = 0
    if need_bytes <= 0:
        return 0, 0
    for _seq, nbytes in candidates:
        count += 1
        freed += nbytes
        if freed >= need_bytes:
            break
    return count, freed


def expired_prefix(rows: Iterable[tuple[int, int]], cutoff_ts: int) -> int:
    """Rows ``(seq, ts)`` oldest first: length of the leading run older than
    ``cutoff_ts``. Expiry stops at the first young row so it only ever removes a
    contiguous range of seqs (one marker covers it)."""
    n = 0
    for _seq, ts in rows:
        if ts >= cutoff_ts:
            break
        n += 1
    return n


def rate(points: Sequence[tuple[float, int]], now: tuple[float, int], window_s: float) -> float | None:
    """Per-second rate of a monotonic counter over about ``window_s``.

    ``points`` are ``(ts, counter)`` samples sorted by ts; ``now`` the current value.
    Uses the oldest sample inside the window (or the newest before it when the
    window holds none), so a sparse sample table still gives an answer.
    """
    t_now, c_now = now
    base = None
    for ts, counter in points:
        if ts >= t_now:
            break
        if ts >= t_now - window_s:
            base = (ts, counter)
            break
        base = (ts, counter)
    if base is None:
        return None
    dt = t_now - base[0]
    if dt <= 0:
        return None
    return max(0.0, (c_now - base[1]) / dt)


def runway_s(
    budget_bytes: int, used_bytes: int, ingest_rate: float | None, drain_rate: float | None, bytes_per_row: float
) -> float | None:
    """Seconds until the budget is full at the current net fill rate; None when not filling."""
    if ingest_rate is None:
        return None
    net = ingest_rate - (drain_rate or 0.0)
    if net <= 0 or bytes_per_row <= 0:
        return None
    return max(0.0, (budget_bytes - used_bytes) / (net * bytes_per_row))


def drain_eta_s(depth: int, ingest_rate: float | None, drain_rate: float | None) -> float | None:
    """Seconds until the backlog is gone at the current net drain rate; None when not draining."""
    if depth <= 0:
        return 0.0
    if drain_rate is None:
        return None
    net = drain_rate - (ingest_rate or 0.0)
    if net <= 0:
        return None
    return depth / net


def used_pct(used_bytes: int, budget_bytes: int) -> float:
    if budget_bytes <= 0:
        return 100.0
    return round(100.0 * used_bytes / budget_bytes, 2)
