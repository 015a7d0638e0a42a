"""One session of the forwarder: its streams and the window of batches in flight over them.

The window is a deque of batches in global seq order; the spool's watermark moves only
over its acked prefix, so it stays contiguous with one stream or many. How much is in
flight and on how many streams is edge/forward/pace.py's answer, asked again as acks come.

A stream lost to a retriable error does not end the session when it had acked before
(a stream that never acked, or a Blocked / RejectRecord verdict, does):

- the server closed it (close-stream signal, then status OK: a rotation);
- the service refused it over its quota (RESOURCE_EXHAUSTED: a throttle);
- it failed otherwise (the SDK reports a send racing the close signal as a plain
  internal error, which no client can tell from a real failure).

Its batches acked before it went are kept as acked; the others are read again from the
spool (they are protected, so they are the same rows) and resent first, in seq order,
on the other streams or on its replacement: nothing is sent twice that the service had
acked. After a throttle the replacement opens after a short, growing pause, and the pace
asks for one more stream (the quota is per stream). Any other failure ends the session:
the loop backs off and resends from the watermark (edge/forward/loop.py).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edge.forward.pace import STALL_MIN_S, STALL_RTTS
from edge.forward.sink import AckSignal, Failure
from edge.forward.spoolside import WAIT_SLICE, Stopped
from edge.outcome import Retry

if TYPE_CHECKING:
    from edge.forward.loop import Forwarder

STOP_GRACE = 3.0
REOPEN_AFTER_ERROR = 1.0
CPU_SAMPLE_S = 1.0


class Paused(Exception):
    """An operator paused forwarding: finish the window, close the streams."""


@dataclass(eq=False)
class Batch:
    first_seq: int
    last_seq: int
    count: int
    nbytes: int
    link: Any = None  # the stream it is in flight on; None = waiting to be (re)sent
    offset: int = -1
    sent_at: float = 0.0
    head_since: float = 0.0
    acked: bool = False


class Pump:
    def __init__(self, fwd: "Forwarder", signal: AckSignal):
        self.fwd = fwd
        self.t = fwd.telemetry
        self.pace = fwd.pace
        self.spool = fwd.spool
        self.signal = signal
        self.streams: list = []
        self.window: deque[Batch] = deque()
        self.sent_hi = self.t.acked_hi
        self.rr = 0
        self.limited = False
        self.reopen_at = 0.0
        self.limit_rows = int(fwd.cfg.batch_max_records)
        self.calls_per_stream = max(1, int(fwd.cfg.max_inflight_batches))
        self.ack_timeout = float(fwd.cfg.ack_timeout)
        self._cpu_at = (time.monotonic(), time.thread_time())

    # --------------------------------------------------------------- streams

    def _open_wanted(self, first: bool = False) -> None:
        want = max(1, min(self.pace.streams, int(self.fwd.cfg.streams)))
        while len(self.streams) < want and time.monotonic() >= self.reopen_at:
            try:
                self.streams.append(self.fwd.open_stream(self.signal))
            except Failure as f:
                if first or not self.streams or not isinstance(f.outcome, Retry):
                    raise
                # One more stream is a bonus: the session goes on with those it has.
                self.t.error("create", type(f.outcome).__name__, f.outcome.reason)
                self.reopen_at = time.monotonic() + REOPEN_AFTER_ERROR
            first = False
        self.pace.streams_open = len(self.streams)

    def _shrink(self) -> None:
        """Caught up (nothing in flight): close the streams beyond those the pace wants."""
        while len(self.streams) > max(1, self.pace.streams):
            self.fwd.retire_stream(self.streams.pop())
        self.pace.streams_open = len(self.streams)

    def _lost(self, link, f: Failure) -> None:
        """A stream failed: a routine loss (rotation, throttle) requeues its batches; anything else is raised."""
        out = f.outcome
        # A stream that never acked is not replaced on its own: a server failing every stream
        # gets the session's backoff (edge/forward/loop.py).
        if not isinstance(out, Retry) or (not out.throttled and link.acks.acked < 0):
            raise f
        now = time.monotonic()
        for b in self.window:
            if b.link is link:
                if link.acks.acked >= b.offset:
                    b.acked = True
                else:
                    b.link = None
                    self.pace.dropped(b.nbytes)
        self.streams.remove(link)
        self.fwd.retire_stream(link)
        self.pace.streams_open = len(self.streams)
        if out.throttled:
            self.reopen_at = max(self.reopen_at, now + self.pace.throttled(now))
            self.t.count("throttled")
        else:
            # A rotation, or a stream lost while others may still be fine (the SDK reports a
            # send that races the close signal as a plain internal error): replace that one.
            self.t.count("rotations" if out.graceful else "failures")
        self.t.error(f.phase, "Throttled" if out.throttled else "Rotation" if out.graceful else "Retry", out.reason)

    def _check_errors(self, phase: str = "ack") -> None:
        for link in list(self.streams):
            if link.acks.error is not None:
                self._lost(link, link.failure(None, phase))

    # ------------------------------------------------------------------ send

    def _fill(self) -> None:
        for b in self.window:  # what a lost stream left unacked goes first, in seq order
            if b.link is None and not b.acked:
                link = self._link_with_room()
                if link is None or not self._send(b, self._reread(b), link):
                    return
        cap_calls = self.calls_per_stream * len(self._sending())
        while self.streams:
            unsettled = self.spool.unsettled()
            link = self._link_with_room()
            if link is None or (self.window and (len(self.window) + unsettled >= cap_calls
                                                 or self.pace.inflight_bytes >= self.pace.window)):
                if not self.limited:
                    self.limited = True
                    self.fwd.publish_pace()  # a drain began: the state says so (measuring) before its first ack
                if self.pace.streams < self.pace.max_streams and self.spool.reader.peek(self.sent_hi, 1, self.spool.batch_bytes):
                    self.pace.backlogged(time.monotonic())  # more left than the window holds: all streams now
                return
            rows = self.spool.peek_protected(self.sent_hi, self.limit_rows)
            if not rows:
                self.limited = False
                return
            records = self.fwd.framer.frame_rows(rows)
            last = rows[-1][0]
            b = Batch(rows[0][0], last, len(rows), sum(map(len, records)))
            self.window.append(b)
            self.sent_hi = last
            self.t.sent(len(rows), last, last <= self.t.sent_hi)
            if not self._send(b, records, link):
                return

    def _link_with_room(self):
        """The next stream (round robin) with fewer than max_inflight_batches calls unacked, or None.

        The SDK blocks an ingest beyond its own limit (max_inflight_batches + 1) until an ack
        comes, which a silent server never sends: the loop must not make that call. Streams
        opened during a drain start empty while the first ones are full. Only the streams the
        pace sends on are considered (a narrowing probe leaves the last one idle).
        """
        sending = self._sending()
        n = len(sending)
        for i in range(n):
            link = sending[(self.rr + i) % n]
            acked = link.acks.acked
            busy = sum(1 for b in self.window if b.link is link and not b.acked and b.offset > acked)
            if busy < self.calls_per_stream:
                self.rr += i
                return link
        return None

    def _sending(self) -> list:
        """The streams new batches go to: all open ones, or one fewer while the pace probes by leaving one out."""
        k = self.pace.send_streams
        return self.streams if k is None or k >= len(self.streams) else self.streams[:max(1, k)]

    def _send(self, b: Batch, records: list[bytes], link) -> bool:
        try:
            offset = link.ingest(records)
        except Failure as f:
            self._lost(link, f)
            return False
        self.rr += 1
        now = time.monotonic()
        if b.offset >= 0:  # sent before, on a stream that went away
            self.t.count("resent", b.count)
        b.link, b.offset, b.sent_at = link, offset, now
        if b is self.window[0]:
            b.head_since = now
        self.pace.sent(b.nbytes)
        self.t.set_inflight(len(self.window))
        return True

    def _reread(self, b: Batch) -> list[bytes]:
        rows = self.spool.reader.peek(b.first_seq - 1, b.count, self.spool.batch_bytes)
        if not rows or rows[0][0] != b.first_seq or rows[-1][0] != b.last_seq or len(rows) != b.count:
            raise Failure(Retry(f"seqs {b.first_seq}-{b.last_seq} changed in the spool before their resend"), "internal")
        return self.fwd.framer.frame_rows(rows)

    # ------------------------------------------------------------------ loop

    def run(self) -> None:
        fwd, t = self.fwd, self.t
        self.pace.inflight_bytes = 0
        self._open_wanted(first=True)
        idle = False
        stop_by = None
        while True:
            self._sample_cpu()
            if fwd.stopping() or fwd.paused():
                # Let the batches already in flight be acked (fewer duplicates after a clean
                # restart), but never wait longer than STOP_GRACE.
                stop_by = stop_by or time.monotonic() + STOP_GRACE
                if not self.window or time.monotonic() > stop_by:
                    raise Stopped() if fwd.stopping() else Paused()
            else:
                self._open_wanted()
                # Batches acked by the service but not yet recorded in the spool count against
                # the window too: after a crash everything above the watermark is resent, so
                # this keeps the duplicates of a crash within one window.
                self._fill()
            if not self.window and self.spool.unrecorded:
                self.spool.wait_recorded(WAIT_SLICE)
                continue
            if not self.window:
                self._check_errors("idle")  # a stream the server closed while idle is replaced now
                if not idle:
                    idle = True
                    # The cut's drain ends before the state says idle (a reader of "idle" sees it closed).
                    self.pace.idle()
                    fwd.caught_up()
                    t.set_state("idle", "caught up")
                    self._shrink()
                    fwd.publish_pace()
                fwd.wait_idle(self.signal, self.streams)
                continue
            if idle or t.state not in ("streaming", "stalled"):
                idle = False
                t.set_state("streaming", "")
            self._advance()

    def _advance(self) -> None:
        """Pop the acked prefix of the window, or wait a slice for the head's ack."""
        head = self.window[0]
        if not head.head_since:
            head.head_since = time.monotonic()
        if self._head_done(head):
            while self.window and self._head_done(self.window[0]):
                b = self.window.popleft()
                now = time.monotonic()
                self.pace.acked(now, b.nbytes, b.count, now - b.sent_at, self.limited)
                self.fwd.on_acked(b.count, b.last_seq, b.sent_at)
            if self.t.state == "stalled":
                self.t.set_state("streaming", "")
            self.t.set_inflight(len(self.window))
            self.fwd.publish_pace()
            return
        self._check_errors()
        # No progress for ack_timeout (from send, or from becoming the head of a deep window)
        # means the server is not acking: fail and resend from the spool.
        now = time.monotonic()
        self._check_stall(head, now)
        left = head.head_since + self.ack_timeout - now
        if left <= 0:
            raise Failure(Retry(f"no ack within {self.ack_timeout:g}s for seqs {head.first_seq}-{head.last_seq}"), "ack")
        streams = self.streams
        self.signal.wait_for(lambda: self._head_done(head) or any(s.acks.error is not None for s in streams),
                             min(left, WAIT_SLICE))
        if not self._head_done(head):
            self.spool.record_acks()
            self.t.persist()

    def _check_stall(self, head: Batch, now: float) -> None:
        """No ack for the pace's stall interval with batches in flight: say ``stalled`` now, not at
        ack_timeout; the streams stay up (an ack ends the stall, the SDK's own failure the session)."""
        waited = now - head.head_since
        if self.t.state == "stalled" or waited < STALL_MIN_S:
            return
        after = self.pace.stall_after()
        if waited < after:
            return
        since = max(self.t.last_ack_ts or 0.0, time.time() - waited)
        self.t.stalled(since, f"no ack for {waited:.1f}s with {len(self.window)} batch(es) in flight "
                              f"(stall after {after:.1f}s: max({STALL_RTTS:g} x p99 RTT, {STALL_MIN_S:g}s))",
                       self.spool.backlog)

    @staticmethod
    def _head_done(b: Batch) -> bool:
        return b.acked or (b.link is not None and b.link.acks.acked >= b.offset)

    def _sample_cpu(self) -> None:
        now, cpu = time.monotonic(), time.thread_time()
        wall = now - self._cpu_at[0]
        if wall >= CPU_SAMPLE_S:
            self.pace.cpu_sample((cpu - self._cpu_at[1]) / wall)
            self._cpu_at = (now, cpu)
            self.fwd.publish_pace()
