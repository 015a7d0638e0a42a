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

from edge.encode import encode_reading
from edge.sources.synthetic.config import Config
from edge.sources.context import SourceContext, emit_with_backpressure, raise_if_cancelled
from edge.sources.states import State
from edge.sources.status import now_us


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
        ctx.status.set_state(State.RUNNING, f"{cfg.rate:g} readings/s over {cfg.points} points")
        owed = 0.0
        last = time.monotonic()
        while True:
            await asyncio.sleep(cfg.batch_interval)
            raise_if_cancelled()
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
            ctx.status.set_state(State.RUNNING, f"{cfg.rate:g} readings/s over {cfg.points} points")
            ctx.status.readings(n)
