"""Sequence accounting (pure): which seqs are missing downstream, and which gaps loss markers explain.

Every seq of an appliance either reaches the table as a row or is covered by a
loss marker (``kind = 'loss'``, ``loss_from_seq..loss_to_seq``). A missing
range that no marker covers is an unexplained loss: a bug, or data still in
flight. Ranges are inclusive ``[a, b]`` pairs.
"""

from __future__ import annotations

from typing import Iterable


def merge(ranges: Iterable[tuple[int, int]]) -> list[list[int]]:
    out: list[list[int]] = []
    for a, b in sorted((int(a), int(b)) for a, b in ranges if b >= a):
        if out and a <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def subtract(ranges: Iterable[tuple[int, int]], covers: Iterable[tuple[int, int]]) -> list[list[int]]:
    """The parts of ``ranges`` that no range of ``covers`` contains."""
    cov = merge(covers)
    out: list[list[int]] = []
    for a, b in merge(ranges):
        cur = a
        for c, d in cov:
            if d < cur:
                continue
            if c > b:
                break
            if c > cur:
                out.append([cur, c - 1])
            cur = max(cur, d + 1)
            if cur > b:
                break
        if cur <= b:
            out.append([cur, b])
    return out


def count(ranges: Iterable[tuple[int, int]]) -> int:
    return sum(b - a + 1 for a, b in ranges)


def report(*, rows: int, unique: int, min_seq: int | None, max_seq: int | None,
           gaps: Iterable[tuple[int, int]], markers: Iterable[tuple[int, int]]) -> dict:
    """One appliance's accounting in the shape of the emulator's /stats entry."""
    missing = merge(gaps)
    unexplained = subtract(missing, markers)
    return {
        "rows": rows,
        "unique": unique,
        "duplicates": rows - unique,
        "min_seq": min_seq,
        "max_seq": max_seq,
        "missing": missing,
        "unexplained_missing": unexplained,
        "missing_count": count(missing),
        "unexplained_missing_count": count(unexplained),
        "loss_markers": len(merge(markers)),
    }
