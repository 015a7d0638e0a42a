"""Isolating a record the service rejects, and dead-lettering it.

Bisect the oldest unacked batch on fresh streams until the rejected record is alone.
Parts are sent one at a time in seq order, so every ack keeps the watermark
contiguous. A part that passes is acked (a batch whose halves all pass is simply
delivered); a single rejected record goes to the dead-letter table and its slot's loss
marker is sent before anything after it, because ``ack`` deletes every row at or below
the acked seq.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from edge.forward.sink import AckSignal, Failure, close_all
from edge.forward.spoolside import WAIT_SLICE, Stopped
from edge.outcome import Blocked, RejectRecord, Retry

if TYPE_CHECKING:
    from edge.forward.loop import Forwarder

log = logging.getLogger("edge.forwarder")

SDK_CALL_LIMIT = 10_420_224


def isolate(fwd: "Forwarder", first: RejectRecord) -> None:
    log.warning("the service rejected a batch (%s); isolating the record", first.reason)
    fwd.telemetry.set_state("streaming", f"isolating a rejected record: {first.reason}")
    rows = fwd.spool.peek_protected(fwd.telemetry.acked_hi, int(fwd.cfg.batch_max_records))
    if not rows:
        return
    fwd.sink.reset()
    stack = [rows]
    dead: set[int] = set()
    while stack:
        part = stack.pop()
        rejected = _send_alone(fwd, part)
        if rejected is None:
            continue
        if len(part) > 1:
            mid = len(part) // 2
            stack.append(part[mid:])
            stack.append(part[:mid])
            continue
        seq = part[0][0]
        if seq in dead:
            raise Failure(Blocked(f"the service rejects the loss marker at seq {seq}: {rejected.reason}"), "ingest")
        _dead_letter(fwd, seq, rejected.reason)
        dead.add(seq)
        marker = fwd.spool.reader.peek(seq - 1, 1, SDK_CALL_LIMIT)
        if marker and marker[0][0] == seq:
            stack.append(marker)


def _send_alone(fwd: "Forwarder", rows: list) -> RejectRecord | None:
    """Send ``rows`` on a fresh stream and wait for the ack. None = delivered and acked."""
    signal = AckSignal()
    link = fwd.open_stream(signal)
    try:
        records = fwd.framer.frame_rows(rows)
        sent_at = time.monotonic()
        try:
            offset = link.ingest(records)
        except Failure as f:
            if isinstance(f.outcome, RejectRecord):
                return f.outcome
            raise
        fwd.telemetry.count("resent", len(rows))
        fwd.telemetry.set_inflight(1)
        ack_timeout = float(fwd.cfg.ack_timeout)
        acks = link.acks
        while True:
            if fwd.stopping():
                raise Stopped()
            left = sent_at + ack_timeout - time.monotonic()
            if left <= 0:
                raise Failure(Retry(f"no ack within {ack_timeout:g}s while isolating a rejected record"), "ack")
            signal.wait_for(lambda: acks.acked >= offset or acks.error is not None, min(left, WAIT_SLICE))
            if acks.acked >= offset:
                break
            if acks.error is not None:
                f = link.failure(None, "ack")
                if isinstance(f.outcome, RejectRecord):
                    return f.outcome
                raise f
        fwd.on_acked(len(rows), rows[-1][0], sent_at)
        return None
    finally:
        close_all([link])
        fwd.telemetry.set_inflight(0)


def _dead_letter(fwd: "Forwarder", seq: int, reason: str) -> None:
    log.error("seq %d rejected by the service, moved to dead letters: %s", seq, reason)
    fwd.writer.dead_letter(seq, reason).result(timeout=60)
    fwd.telemetry.count("dead_lettered")
    fwd.telemetry.error("ingest", "RejectRecord", f"seq {seq} dead-lettered: {reason}")
