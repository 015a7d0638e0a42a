"""Back-fill: the per-node checkpoint of committed source times, and HistoryRead for the gap.

The checkpoint holds, per point, the SourceTimestamp of the newest value whose emit()
returned (so it is committed in the spool). It only ever lags the spool, never leads it:
after a crash the back-fill re-reads at most ``checkpoint_interval`` worth of values
(duplicates, same point and source_ts), and never skips one.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from asyncua import ua

from edge.sources.opcua.map import us_to_datetime

log = logging.getLogger("edge.sources.opcua")


class Checkpoint:
    def __init__(self, path: Path, endpoint: str):
        self.path = path
        self.endpoint = endpoint
        self.points: dict[str, int] = {}
        self.dirty = False

    def load(self) -> None:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            # A broken checkpoint costs the back-fill of one downtime, not the collector: say so and go on.
            log.error("ignoring unreadable OPC-UA checkpoint %s: %s", self.path, exc)
            return
        if data.get("endpoint") != self.endpoint:
            log.warning("checkpoint %s is for %s, not %s: ignored", self.path, data.get("endpoint"), self.endpoint)
            return
        self.points = {str(k): int(v) for k, v in (data.get("points") or {}).items()}

    def advance(self, point: str, ts: int) -> None:
        if ts > self.points.get(point, -1):
            self.points[point] = ts
            self.dirty = True

    def snapshot(self) -> bytes:
        self.dirty = False
        return json.dumps({"version": 1, "endpoint": self.endpoint, "points": self.points}, separators=(",", ":")).encode()

    def write(self, blob: bytes) -> None:
        """Atomic replace with fsync (runs in a worker thread)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        dfd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


@dataclass
class BackfillReport:
    nodes: int = 0
    values: int = 0
    unsupported: list[tuple[str, str]] = field(default_factory=list)  # (point, status name)
    truncated: list[str] = field(default_factory=list)  # hit max_values_per_node
    clamped: list[str] = field(default_factory=list)  # gap longer than max_gap

    def summary(self) -> str:
        parts = [f"back-filled {self.values} values for {self.nodes} nodes"]
        if self.unsupported:
            parts.append(f"no history for {len(self.unsupported)} nodes ({self.unsupported[0][1]}): their gap stays open")
        if self.truncated:
            parts.append(f"{len(self.truncated)} nodes hit max_values_per_node")
        if self.clamped:
            parts.append(f"{len(self.clamped)} nodes were down longer than max_gap")
        return "; ".join(parts)


async def read_gap(
    client: Any,
    wanted: list[tuple[str, ua.NodeId, int]],  # (point, nodeid, last committed source_ts us)
    *,
    now_us: int,
    max_gap_s: float,
    max_values: int,
    nodes_per_request: int,
    on_values: Callable[[str, list], Any],
) -> BackfillReport:
    """HistoryReadRaw from each node's last committed time to now; ``on_values(point, datavalues)`` per page."""
    rep = BackfillReport()
    floor = now_us - int(max_gap_s * 1e6)
    # Nodes with similar start times share a request: one StartTime per request, each node filters its own.
    jobs = sorted(((p, n, max(ts, floor), ts < floor) for p, n, ts in wanted), key=lambda j: j[2])
    end = us_to_datetime(now_us) + timedelta(minutes=5)  # server clock may run ahead of ours
    for i in range(0, len(jobs), nodes_per_request):
        batch = jobs[i:i + nodes_per_request]
        start = us_to_datetime(batch[0][2])
        for p, _, _, clamped in batch:
            if clamped:
                rep.clamped.append(p)
        pending = [(p, n, None) for p, n, _, _ in batch]
        counts: dict[str, int] = {}
        while pending:
            details = ua.ReadRawModifiedDetails()
            details.IsReadModified = False
            details.StartTime = start
            details.EndTime = end
            details.NumValuesPerNode = 0 if max_values <= 0 else min(max_values, 10_000)
            details.ReturnBounds = False
            params = ua.HistoryReadParameters()
            params.HistoryReadDetails = details
            params.TimestampsToReturn = ua.TimestampsToReturn.Both
            params.ReleaseContinuationPoints = False
            for _, nid, cont in pending:
                rv = ua.HistoryReadValueId()
                rv.NodeId = nid
                rv.ContinuationPoint = cont
                params.NodesToRead.append(rv)
            results = await client.uaclient.history_read(params)
            nxt = []
            for (p, nid, _), res in zip(pending, results):
                if not res.StatusCode.is_good():
                    rep.unsupported.append((p, res.StatusCode.name))
                    continue
                dvs = list(getattr(res.HistoryData, "DataValues", None) or [])
                if dvs:
                    counts[p] = counts.get(p, 0) + len(dvs)
                    rep.values += len(dvs)
                    await on_values(p, dvs)
                if res.ContinuationPoint:
                    if counts.get(p, 0) >= max_values:
                        rep.truncated.append(p)
                        await _release(client, details, nid, res.ContinuationPoint)
                    else:
                        nxt.append((p, nid, res.ContinuationPoint))
            pending = nxt
        rep.nodes += len(batch)
    return rep


async def _release(client: Any, details: Any, nid: ua.NodeId, cont: bytes) -> None:
    params = ua.HistoryReadParameters()
    params.HistoryReadDetails = details
    params.TimestampsToReturn = ua.TimestampsToReturn.Both
    params.ReleaseContinuationPoints = True
    rv = ua.HistoryReadValueId()
    rv.NodeId = nid
    rv.ContinuationPoint = cont
    params.NodesToRead.append(rv)
    try:
        await client.uaclient.history_read(params)
    except Exception:  # noqa: BLE001 - releasing is a courtesy to the server
        log.debug("releasing a history continuation point failed", exc_info=True)


def utcnow_us() -> int:
    return (datetime.now(timezone.utc) - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)
