"""Sets of integers kept as sorted, disjoint, non-adjacent inclusive intervals. Pure."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Iterable


class IntervalSet:
    __slots__ = ("starts", "ends")

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()):
        self.starts: list[int] = []
        self.ends: list[int] = []
        for a, b in ranges:
            self.add(a, b)

    def add(self, a: int, b: int) -> int:
        """Add a..b (inclusive); returns how many integers were not in the set before."""
        if b < a:
            return 0
        starts, ends = self.starts, self.ends
        i = bisect_left(ends, a - 1)  # first interval that touches or follows a
        j = bisect_right(starts, b + 1)  # intervals i..j-1 touch or overlap a..b
        if i == j:
            starts.insert(i, a)
            ends.insert(i, b)
            return b - a + 1
        overlap = 0
        for k in range(i, j):
            lo, hi = max(starts[k], a), min(ends[k], b)
            if hi >= lo:
                overlap += hi - lo + 1
        new_a, new_b = min(a, starts[i]), max(b, ends[j - 1])
        starts[i:j] = [new_a]
        ends[i:j] = [new_b]
        return (b - a + 1) - overlap

    def __len__(self) -> int:
        return len(self.starts)

    def count(self) -> int:
        return sum(e - s + 1 for s, e in zip(self.starts, self.ends))

    @property
    def min(self) -> int | None:
        return self.starts[0] if self.starts else None

    @property
    def max(self) -> int | None:
        return self.ends[-1] if self.ends else None

    def ranges(self) -> list[list[int]]:
        return [[s, e] for s, e in zip(self.starts, self.ends)]

    def gaps(self) -> list[list[int]]:
        """The holes between min and max, inclusive ranges."""
        return [[self.ends[k] + 1, self.starts[k + 1] - 1] for k in range(len(self.starts) - 1)]

    def uncovered(self, ranges: list[list[int]]) -> list[list[int]]:
        """The parts of ``ranges`` (sorted, disjoint) not in this set."""
        out: list[list[int]] = []
        starts, ends = self.starts, self.ends
        for a, b in ranges:
            k = bisect_left(ends, a)
            cur = a
            while k < len(starts) and starts[k] <= b:
                if starts[k] > cur:
                    out.append([cur, starts[k] - 1])
                cur = max(cur, ends[k] + 1)
                k += 1
            if cur <= b:
                out.append([cur, b])
        return out
