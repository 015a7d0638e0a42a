"""A source that makes up plausible readings at a fixed rate: for demos, load tests and drills.

Points are named ``<prefix>/<index>`` and follow a slow sine with noise, so a
chart of them looks like a process value. Every reading carries the source
time it was generated for, so a backlog is visible as age downstream.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from dataclasses import dataclass

from edge.config import SourceBase
from edge.configtypes import ConfigError, Duration
from edge.encode import encode_reading
from edge.sources.base import SourceContext, emit_with_backpressure, now_us


@dataclass
class Config(SourceBase):
    rate: float = 10.0  # readings per second, all points together
    points: int = 10
    prefix: str = "synthetic"
    batch_interval: Duration = Duration(0.1)  # emit what accumulated every this often
    unit: str = "degC"

    def validate(self, path: str) -> None:
        super().validate(path)
        if not 0 < self.rate <= 2_000_000:
            raise ConfigError(f"{path}.rate", "must be > 0 and <= 2000000 readings/s")
        if not 1 <= self.points <= 1_000_000:
            raise ConfigError(f"{path}.points", "must be between 1 and 1000000")
        if not 0.001 <= self.batch_interval <= 10:
            raise ConfigError(f"{path}.batch_interval", "must be between 1ms and 10s")


class Source:
    def __init__(self, cfg: Config, ctx: SourceContext):
        self.cfg = cfg
        self.ctx = ctx
        self._rng = random.Random(cfg.name)
        self._next_point = 0

    def _batch(self, n: int, ts: int) -> list[tuple[int, bytes]]:
        cfg = self.cfg
        out = []
        phase = ts / 60e6
        for _ in range(n):
            i = self._next_point
            self._next_point = (i + 1) % cfg.points
            value = 50.0 + 20.0 * math.sin(phase + i) + self._rng.gauss(0, 0.5)
            body = encode_reading(
                source=cfg.name, protocol="synthetic", point=f"{cfg.prefix}/{i}",
                value=round(value, 3), source_ts=ts, collected_ts=ts, unit=cfg.unit, data_type="Double",
            )
            out.append((ts, body))
        return out

    async def run(self) -> None:
        cfg, ctx = self.cfg, self.ctx
        ctx.status.set_state("running", f"{cfg.rate:g} readings/s over {cfg.points} points")
        owed = 0.0
        last = time.monotonic()
        while True:
            await asyncio.sleep(cfg.batch_interval)
            t = time.monotonic()
            owed += (t - last) * cfg.rate
            last = t
            n = int(owed)
            if n == 0:
                continue
            owed -= n
            # Cap one batch so a long stall (spool blocked) does not come back as one huge burst.
            n = min(n, max(1, int(cfg.rate * 2)))
            await emit_with_backpressure(ctx, self._batch(n, now_us()))
            ctx.status.set_state("running", f"{cfg.rate:g} readings/s over {cfg.points} points")
            ctx.status.readings(n)
