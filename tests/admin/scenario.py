"""A spool with two hours of history: steady ingest, one past egress cut that drained, one cut going on now.

Built with the real ``Spool`` (samples stamped with past times) so the charts,
rates and drill timeline on the page come from real spool data.
"""

from __future__ import annotations

import time
from pathlib import Path

from edge.encode import encode_reading
from edge.spool import Spool

STEP_S = 60
RATE = 20  # readings/s of the plant
HISTORY_MIN = 120
PAST_CUT = (40, 52)  # minutes ago (start, reconnect)
NOW_CUT_MIN = 6  # the current cut started this many minutes ago


def _batch(n: int, ts_us: int, source: str) -> list[tuple[int, bytes]]:
    return [(ts_us + i, encode_reading(source=source, protocol="opcua", point=f"Line1/Temp{i % 25}",
                                       value=20.0 + (i % 7), source_ts=ts_us + i, collected_ts=ts_us + i))
            for i in range(n)]


def build(path: Path, appliance_id: str, max_bytes: int) -> dict:
    """Returns the cut timestamps for a forwarder state record."""
    sp = Spool.open(path, appliance_id=appliance_id, max_bytes=max_bytes)
    now = time.time()
    start = now - HISTORY_MIN * 60
    cut1 = (now - PAST_CUT[0] * 60, now - PAST_CUT[1] * 60)
    cut1 = (min(cut1), max(cut1))
    cut2 = now - NOW_CUT_MIN * 60
    drained1 = None
    try:
        t = start
        while t <= now:
            sp.append(_batch(RATE * STEP_S, int(t * 1e6), "opcua-line1"))
            in_cut = cut1[0] <= t < cut1[1] or t >= cut2
            if not in_cut:
                # Catch up at up to 4x the ingest rate after a reconnect.
                backlog = sp.next_seq - 1 - sp.watermark()
                sp.ack(sp.watermark() + min(backlog, RATE * STEP_S * 4))
                if t >= cut1[1] and drained1 is None and sp.next_seq - 1 - sp.watermark() == 0:
                    drained1 = t
            sp.sample(now=t)
            t += STEP_S
    finally:
        sp.close()
    return {"cut1": cut1, "drained1": drained1, "cut2": cut2}
