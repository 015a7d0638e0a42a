"""How the emulator imitates the real service's timing: ack latency, per-stream quotas, stream lifetime.

Pure (no I/O, no asyncio): the gRPC service asks these objects *when* to ack, read or
rotate, and does the waiting itself. Every default and behaviour is sourced in README.md
("Realistic profile").
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, fields, replace
from typing import Any

QUOTA_ACTIONS = ("throttle", "reject")
# The profile keys that POST /faults may override per test (same names as the flags).
OVERRIDABLE = ("ack_latency_ms", "ack_jitter_ms", "quota_records_per_s", "quota_bytes_per_s", "quota_action",
               "stream_lifetime_s", "close_grace_ms")
_Z95 = 1.6448536269514722  # standard normal 95th percentile


@dataclass(frozen=True)
class Profile:
    ack_latency_ms: float = 0.0        # median time from a batch's arrival to its ack
    ack_jitter_ms: float = 0.0         # p95 - median of that time (log-normal spread); 0 = fixed
    quota_records_per_s: float = 0.0   # per stream; 0 = unlimited
    quota_bytes_per_s: float = 0.0     # per stream (gRPC message bytes); 0 = unlimited
    quota_action: str = "throttle"     # throttle = flow control + late acks; reject = RESOURCE_EXHAUSTED
    stream_lifetime_s: float = 0.0     # server sends close_stream_signal after this; 0 = never
    close_grace_ms: int = 30_000       # duration carried by that signal; the RPC ends after it

    def with_overrides(self, overrides: dict[str, Any]) -> "Profile":
        known = {k: v for k, v in overrides.items() if k in OVERRIDABLE}
        return replace(self, **known) if known else self

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# Published figures (README.md cites each): ack p50 150-200 ms and p95 <= 500 ms,
# 100k records/s and 100 MB/s per stream, streams closed by the server (the SDK
# plans for ~15 minutes).
REALISTIC = Profile(ack_latency_ms=175.0, ack_jitter_ms=325.0, quota_records_per_s=100_000.0,
                    quota_bytes_per_s=100_000_000.0, quota_action="throttle", stream_lifetime_s=900.0,
                    close_grace_ms=30_000)
PROFILES = {"none": Profile(), "realistic": REALISTIC}


def check(key: str, value: Any) -> Any:
    """Validate one profile value (flags and the fault API share it). Raises ValueError."""
    if key == "quota_action":
        if value not in QUOTA_ACTIONS:
            raise ValueError(f"quota_action must be one of {', '.join(QUOTA_ACTIONS)}")
        return value
    if key not in OVERRIDABLE:
        raise ValueError(f"unknown profile setting {key!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or math.isinf(value):
        raise ValueError(f"{key} must be a non-negative number")
    return int(value) if key == "close_grace_ms" else float(value)


def ack_latency_s(profile: Profile, rng: random.Random) -> float:
    """One ack latency: log-normal with median ``ack_latency_ms`` and p95 = median + jitter."""
    median = profile.ack_latency_ms / 1000.0
    if median <= 0:
        return 0.0
    if profile.ack_jitter_ms <= 0:
        return median
    sigma = math.log((profile.ack_latency_ms + profile.ack_jitter_ms) / profile.ack_latency_ms) / _Z95
    return median * math.exp(sigma * rng.gauss(0.0, 1.0))


class Pacer:
    """Per-stream quota as a virtual-time scheduler (GCRA) with 100 ms of burst.

    ``admit`` says when a batch of ``records``/``nbytes`` that arrived at ``now`` fits the
    quota: ``now`` while the stream is under it, later when over (the caller stops reading
    until then, which is HTTP/2 flow control for the client, and acks no earlier).
    """

    BURST_S = 0.1  # unpublished; small, so a measured drain cannot ride on a burst allowance

    def __init__(self) -> None:
        self.tat = 0.0  # theoretical arrival time of the next unit of work
        self.throttled_s = 0.0

    def admit(self, profile: Profile, records: int, nbytes: int, now: float) -> float:
        cost = 0.0
        if profile.quota_records_per_s > 0:
            cost = max(cost, records / profile.quota_records_per_s)
        if profile.quota_bytes_per_s > 0:
            cost = max(cost, nbytes / profile.quota_bytes_per_s)
        if cost == 0.0:
            return now
        start = max(now, self.tat - self.BURST_S)
        self.tat = max(self.tat, now) + cost
        self.throttled_s += start - now
        return start
