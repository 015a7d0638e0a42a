"""Capped exponential backoff with full jitter; pure (the caller sleeps).

Full jitter (a uniform draw in ``[0, min(cap, initial * 2**attempt)]``) spreads
many appliances reconnecting after the same outage instead of synchronising
them into waves.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


def ceiling(attempt: int, initial: float, cap: float) -> float:
    """Upper bound of the delay before retry number ``attempt`` (0-based)."""
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    # Clamp the exponent: 2**1000 as a float overflows long before the cap matters.
    return min(cap, initial * (2.0 ** min(attempt, 62)))


def full_jitter(attempt: int, initial: float, cap: float, rand: float) -> float:
    """Delay for ``attempt`` given a uniform draw ``rand`` in [0, 1)."""
    if not 0.0 <= rand <= 1.0:
        raise ValueError("rand must be in [0, 1]")
    return ceiling(attempt, initial, cap) * rand


@dataclass
class Backoff:
    """Attempt counter: ``next_delay()`` after a failure, ``reset()`` after a success."""

    initial: float
    cap: float
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_delay(self) -> float:
        delay = full_jitter(self.attempt, self.initial, self.cap, self.rng.random())
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0
