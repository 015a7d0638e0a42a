"""Back-fill: the per-node checkpoint of committed source times, and HistoryRead for the gap.

The checkpoint holds, per point, the SourceTimestamp of the newest value whose emit()
returned (so it is committed in the spool). It only ever lags the spool, never leads it:
after a crash the back-fill re-reads at most ``checkpoint_interval`` worth of values
(duplicates, same point and source_ts), and never skips one. Several values may share one
source time (a server with coarse timestamps): the checkpoint also counts how many committed
values carry the newest time, and the back-fill skips only that many at it.

What the back-fill could not recover becomes a ``Gap``: ``GapWatch`` holds each node whose read
came back empty or failed until its first value after the reconnect says whether it changed
in between (see ``GapWatch``).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable

from asyncua import ua

from edge.sources.opcua.map import us_to_datetime

log = logging.getLogger("edge.sources.opcua")


class Checkpoint:
    def __init__(self, path: Path, endpoint: str):
        self.path = path
        self.endpoint = endpoint
        self.points: dict[str, int] = {}
        self.ties: dict[str, int] = {}  # point -> committed values at its checkpointed time, when more than one
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
        self.ties = {str(k): int(v) for k, v in (data.get("ties") or {}).items() if str(k) in self.points}

    def advance(self, point: str, ts: int) -> None:
        cur = self.points.get(point, -1)
        if ts > cur:
            self.points[point] = ts
            if self.ties:
                self.ties.pop(point, None)
            self.dirty = True
        elif ts == cur:  # another committed value with the same source time (only taken values get here)
            self.ties[point] = self.ties.get(point, 1) + 1
            self.dirty = True

    def at_newest(self, point: str) -> int:
        """How many committed values carry the point's checkpointed source time."""
        return self.ties.get(point, 1)

    def snapshot(self) -> bytes:
        self.dirty = False
        doc = {"version": 1, "endpoint": self.endpoint, "points": self.points}
        if self.ties:
            doc["ties"] = self.ties
        return json.dumps(doc, separators=(",", ":")).encode()

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
    values: int = 0  # values the server returned
    new: int = 0  # of those, values not already held (what the back-fill added)
    unsupported: list[tuple[str, str]] = field(default_factory=list)  # (point, status name)
    empty: list[str] = field(default_factory=list)  # Good, and not one value
    failed: list[str] = field(default_factory=list)  # the HistoryRead service call itself failed
    error: BaseException | None = None  # ... with this
    truncated: list[str] = field(default_factory=list)  # hit max_values_per_node (or a full page, no continuation)
    clamped: list[str] = field(default_factory=list)  # gap longer than max_gap
    floor_us: int = 0  # how far back history was asked (now - max_gap)

    def summary(self) -> str:
        parts = [f"back-filled {self.new} values for {self.nodes} nodes"]
        if self.values > self.new:
            parts.append(f"{self.values - self.new} values the server returned were already held")
        if self.unsupported:
            parts.append(f"no history for {len(self.unsupported)} nodes ({self.unsupported[0][1]}): their gap stays open")
        if self.empty:
            parts.append(f"history answered Good with no values for {len(self.empty)} nodes")
        if self.failed:
            parts.append(f"history read failed for {len(self.failed)} nodes")
        if self.truncated:
            parts.append(f"{len(self.truncated)} nodes hit max_values_per_node")
        if self.clamped:
            parts.append(f"{len(self.clamped)} nodes were down longer than max_gap")
        return "; ".join(parts)


# Service faults that mean "this server keeps no history", not "the read went wrong" (open62541
# built without history answers the whole HistoryRead service with BadServiceUnsupported).
_NO_HISTORY_SERVICE = {"BadServiceUnsupported", "BadHistoryOperationUnsupported", "BadNotSupported", "BadNotImplemented"}


def _service_refusal(exc: BaseException) -> str | None:
    """The status name when a failed HistoryRead call is the server saying it has no history."""
    code = getattr(exc, "code", None)
    if not isinstance(exc, ua.UaStatusCodeError) or not isinstance(code, int):
        return None
    name = ua.StatusCode(code).name
    return name if name in _NO_HISTORY_SERVICE else None


async def read_gap(
    client: Any,
    wanted: list[tuple[str, ua.NodeId, int]],  # (point, nodeid, last committed source_ts us)
    *,
    now_us: int,
    max_gap_s: float,
    max_values: int,
    nodes_per_request: int,
    on_values: Callable[[str, list], Awaitable[int]],
) -> BackfillReport:
    """HistoryReadRaw from each node's last committed time to now; ``on_values(point, datavalues)`` per page.

    A failing service call ends the read: that batch's nodes without values and every later
    batch's nodes go to ``failed`` (the caller decides what that means for their gap)."""
    rep = BackfillReport()
    floor = rep.floor_us = now_us - int(max_gap_s * 1e6)
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
            try:
                results = await client.uaclient.history_read(params)
            except Exception as exc:  # noqa: BLE001 - reported per node in the report, the caller says it
                left = [p for p, _, _ in pending if not counts.get(p)] + [p for p, _, _, _ in jobs[i + nodes_per_request:]]
                refused = _service_refusal(exc)
                if refused is not None:  # the server keeps no history at all, and said so for the whole service
                    rep.unsupported += [(p, refused) for p in left]
                else:
                    rep.error = exc
                    rep.failed += left
                rep.nodes += len(batch)
                return rep
            nxt = []
            for (p, nid, _), res in zip(pending, results):
                if not res.StatusCode.is_good():
                    rep.unsupported.append((p, res.StatusCode.name))
                    continue
                dvs = list(getattr(res.HistoryData, "DataValues", None) or [])
                if dvs:
                    counts[p] = counts.get(p, 0) + len(dvs)
                    rep.values += len(dvs)
                    rep.new += await on_values(p, dvs)
                elif not res.ContinuationPoint and not counts.get(p):
                    rep.empty.append(p)
                if res.ContinuationPoint:
                    if counts.get(p, 0) >= max_values:
                        rep.truncated.append(p)
                        await _release(client, details, nid, res.ContinuationPoint)
                    else:
                        nxt.append((p, nid, res.ContinuationPoint))
                elif details.NumValuesPerNode and len(dvs) >= details.NumValuesPerNode:
                    # A full page and no continuation point: some servers (asyncua's own history among
                    # them) stop at NumValuesPerNode without one. What came after it was not read.
                    rep.truncated.append(p)
            pending = nxt
        rep.nodes += len(batch)
    return rep


@dataclass(frozen=True)
class Gap:
    """An interval of one point whose values are lost at the source: nothing can fill it any more."""

    point: str
    start_us: int  # source time of the last value we hold from before the cut
    end_us: int  # source time of the first value after it (or when we were back, if it has none)
    reason: str  # history_empty | history_unsupported | history_failed | max_gap | max_values | backfill_disabled

    @property
    def seconds(self) -> float:
        return max(0, self.end_us - self.start_us) / 1e6

    def as_status(self) -> dict[str, Any]:
        return {"point": self.point, "start_ts": self.start_us / 1e6, "end_ts": self.end_us / 1e6,
                "seconds": round(self.seconds, 3), "reason": self.reason}


class GapWatch:
    """Nodes whose back-fill recovered nothing, until their first value after the reconnect.

    A Good answer with no values is either "nothing changed" or a server that keeps no history
    and does not say so. The first value after the reconnect tells them apart: a new
    subscription always sends the node's current value with its source time. A source time
    after the interval start means the node changed while we were away, so history, read up to
    now, should have held at least that change: it did not, the interval is a gap. The same
    source time as before the cut means the value never changed: no gap. No source time at all:
    we cannot tell, so it counts as a gap (never a silent hole). Bad / unsupported / failed
    reads go through the same test (an unchanged node lost nothing either). Pure, no I/O.
    """

    SHOWN = 50  # newest gaps listed in the status (all are counted, and each is a marker row)

    def __init__(self) -> None:
        self.pending: dict[str, tuple[int, str, int]] = {}  # point -> (start_us, reason, back at us)
        self.recorded: list[Gap] = []  # the newest SHOWN gaps of this process, newest last
        self.count = 0
        self.seconds = 0.0

    def watch(self, point: str, start_us: int, reason: str, back_us: int) -> None:
        self.pending[point] = (start_us, reason, back_us)

    def first_value(self, point: str, source_ts: int | None) -> Gap | None:
        """The point's first value after the reconnect: the gap it proves, if any."""
        start, reason, back = self.pending.pop(point)
        if source_ts is None:
            return Gap(point, start, max(back, start), reason)
        if source_ts <= start:
            return None
        return Gap(point, start, source_ts, reason)

    def clear(self) -> None:
        """A new back-fill re-reads from the same start: what was pending is asked again."""
        self.pending.clear()

    def record(self, gap: Gap) -> dict[str, Any]:
        """Count a gap; returns the status fields that show the open gaps."""
        self.recorded.append(gap)
        del self.recorded[:-self.SHOWN]
        self.count += 1
        self.seconds = round(self.seconds + gap.seconds, 3)
        return {"gaps_open": self.count, "gap_seconds": self.seconds, "gaps": [g.as_status() for g in self.recorded]}


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
