"""How much to keep in flight, on how many streams, and what binds the drain now. Pure (time is passed in).

The window follows the pipe, the way a BBR-style congestion controller sizes it: the
bytes in flight that fill a pipe are its delivery rate x its round-trip time, so the
window is ``GAIN x (best delivery rate of the last RATE_MEMORY_S) x (lowest ack latency
of the last RTT_MEMORY_S)``, bounded below by FLOOR_BATCHES of the largest batch sent per
stream (the fixed window of old) and above by ``zerobus.max_inflight_bytes`` (the memory the SDK
may hold for us). While the drain is
latency-bound the rate is window / RTT, so the window doubles about once per RTT until
something else stops the rate from growing: the per-stream quota, the link, the CPU,
or the memory bound.

What binds, as ``state()`` reports it (only what was measured, never a guess):

- ``measuring``: a drain began (the window filled, or a window-limited ack came) but fewer
  than MEASURE_SAMPLES rate samples of it exist, or acks queue and the probe that tells a
  quota from the link is still running: nothing is known yet about what binds;
- ``latency-bound``: acks come back at the base latency and the window is what limits
  (still growing, or at ``max_inflight_bytes``): rate ~ window / RTT;
- ``quota-bound``: the service throttles a stream (RESOURCE_EXHAUSTED), or acks queue
  up (RTT well above its floor) and an extra stream raised the rate: the per-stream
  quota binds, so more streams open, up to ``zerobus.streams``;
- ``link-bound``: acks queue up and an extra stream did not raise the rate: the shared
  path (uplink, proxy) is full;
- ``queue-bound``: acks queue up (behind a quota, the link, or the service's own CPU) but
  no probe could tell which (only one stream is allowed, or a probe was cut short by a
  lost stream);
- ``cpu-bound``: the forwarder's own thread is busy most of the time (framing, spool reads);
- ``caught-up``: the spool ran dry; ingest, not the drain, sets the rate.

Streams for a backlog: when the window fills while rows remain (``backlogged()``: the
backlog is more than the window holds), every allowed stream opens at once rather than
one probe at a time (doubling on trials took seconds, longer than a short drain: 2 of 4
streams ever opened on a 200k backlog at 150 ms + 100k/s). If a rate was measured
before, that jump is judged as a probe (quota or link); a drain that starts from nothing
has no rate to compare: once it is measured and acks queue, a narrowing probe tells
the quota from the link instead. For PROBE_S (after the queued RTT has passed) new batches go
to one stream fewer (``send_streams``; the idle stream stays open): behind a per-stream quota the
rate falls with the stream's share, behind a shared link the other streams take it up. The probe
costs at most one stream's share for about two seconds, once per drain. Caught up (``idle()``),
the wanted streams fall back to one, and the pump closes the others (nothing is in flight then).

Stalls: ``stall_after()`` is ``max(STALL_RTTS x p99 RTT, STALL_MIN_S)`` over the RTTs of the
last RTT_MEMORY_S: a head batch without an ack for that long means the path is stalled,
long before the SDK's ack timeout fails the stream.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

GAIN = 2.0
RATE_MEMORY_S = 10.0
RTT_MEMORY_S = 30.0
MIN_INTERVAL_S = 0.1  # a rate sample spans at least this, and at least one RTT
QUEUE_FACTOR = 1.5  # RTT above QUEUE_FACTOR x floor + QUEUE_SLACK_S: acks are queueing
QUEUE_SLACK_S = 0.005
THROTTLE_MEMORY_S = 10.0
FLOOR_BATCHES = 4
PROBE_S = 1.0  # a new stream runs at least this (and 8 base RTTs) before its effect on the rate is judged
PROBE_GAIN = 1.15  # the rate must rise this much for the quota (not the link) to be the limit
NARROW_DROP = 0.5  # a narrowing probe: the rate must fall by half a stream's share for the quota to be the limit
NARROW_SAMPLES = 3  # rate samples (one per base RTT) a narrowing probe averages over
NARROW_SETTLE_RTTS = 1.5  # the left-out stream's queue drains for this many smoothed RTTs before sampling
LINK_HOLD_S = 10.0  # after a probe that did not help, no new one for this long (noise can hide a gain: retry)
CPU_BOUND = 0.85
THROTTLE_FIRST_S = 0.1
THROTTLE_MAX_S = 5.0
STALL_RTTS = 5.0
STALL_MIN_S = 3.0
MEASURE_SAMPLES = 3  # window-limited rate samples (each >= one base RTT) before a drain's binding is told


@dataclass
class Figures:
    binding: str
    rtt_ms: float | None
    min_rtt_ms: float | None
    records_per_s: float
    bytes_per_s: float
    window_bytes: int
    inflight_bytes: int
    streams_open: int
    cpu: float

    def as_dict(self) -> dict:
        return {
            "binding": self.binding,
            "rtt_ms": None if self.rtt_ms is None else round(self.rtt_ms, 1),
            "min_rtt_ms": None if self.min_rtt_ms is None else round(self.min_rtt_ms, 1),
            "records_per_s": round(self.records_per_s, 1),
            "bytes_per_s": round(self.bytes_per_s, 1),
            "window_bytes": self.window_bytes,
            "inflight_bytes": self.inflight_bytes,
            "streams_open": self.streams_open,
            "cpu": round(self.cpu, 3),
        }


class Pace:
    """One per forwarder; the loop reports sends, acks, throttles and CPU, and asks for the window and streams."""

    def __init__(self, *, max_bytes: int, min_bytes: int, max_streams: int, initial_bytes: int | None = None):
        self.max_bytes = max(1, int(max_bytes))
        self.min_bytes = max(1, min(int(min_bytes), self.max_bytes))
        self.max_streams = max(1, int(max_streams))
        self.window = min(self.max_bytes, max(self.min_bytes, int(initial_bytes or 4 * self.min_bytes)))
        self.streams = 1  # wanted; kept across sessions
        self.streams_open = 0
        self.inflight_bytes = 0
        self.srtt: float | None = None
        self._rtts: deque[tuple[float, float]] = deque()  # (t, rtt), kept RTT_MEMORY_S
        self._rates: deque[tuple[float, float, float]] = deque()  # (t, bytes/s, records/s), kept RATE_MEMORY_S
        self._iv_start: float | None = None
        self._iv_bytes = 0
        self._iv_records = 0
        self._iv_limited = False
        self.bytes_per_s = 0.0
        self.records_per_s = 0.0
        self._throttled_at: float | None = None
        self._throttles = 0
        self._probe: tuple[float, float] | None = None  # (started, rate before)
        self._probe_best = 0.0
        self._verdict: str | None = None  # "quota" | "link" from the last probe
        self.send_streams: int | None = None  # new batches go to the first this many streams (None: all)
        self._narrow: tuple[float, float, int] | None = None  # (started, rate before, streams) of a narrowing probe
        self._narrow_rates: list[float] = []
        self._hold_until = 0.0
        self.cpu = 0.0
        self.draining = False
        self._batch = 0  # largest batch sent, bytes
        self._min_rtt: float | None = None  # lowest RTT of the last RTT_MEMORY_S
        self._started = False  # a drain began (the window filled) and is not caught up yet
        self._drain_samples = 0  # window-limited rate samples in a row since it began

    # ----------------------------------------------------------- reports

    def sent(self, nbytes: int) -> None:
        self.inflight_bytes += nbytes
        if self.inflight_bytes >= self.window:
            self._started = True
        if nbytes > self._batch:
            self._batch = nbytes
            self.window = max(self.window, self._floor())

    def _floor(self) -> int:
        # Per stream: a quota is per stream, so each one needs its own share of the pipe.
        return min(self.max_bytes, max(self.min_bytes, FLOOR_BATCHES * self._batch * self.streams))

    def dropped(self, nbytes: int) -> None:
        """Bytes that left the window without an ack (their stream went away; they will be resent)."""
        self.inflight_bytes = max(0, self.inflight_bytes - nbytes)

    def acked(self, now: float, nbytes: int, records: int, rtt: float, limited: bool) -> None:
        """A batch acked after ``rtt``; ``limited``: the window (not the spool) stopped the last fill."""
        self.inflight_bytes = max(0, self.inflight_bytes - nbytes)
        self._throttles = 0
        self.srtt = rtt if self.srtt is None else 0.875 * self.srtt + 0.125 * rtt
        self._rtts.append((now, rtt))
        self._min_rtt = rtt if self._min_rtt is None else min(self._min_rtt, rtt)
        if self._iv_start is None:
            self._iv_start = now - rtt
        self._iv_bytes += nbytes
        self._iv_records += records
        self._iv_limited = self._iv_limited or limited
        span = now - self._iv_start
        # One sample per base RTT (not per queued RTT: a probe must be judged before the queue drains).
        if span >= max(MIN_INTERVAL_S, self._min_rtt):
            while self._rtts and self._rtts[0][0] < now - RTT_MEMORY_S:
                self._rtts.popleft()
            self._min_rtt = min(r for _, r in self._rtts)
            self.bytes_per_s = self._iv_bytes / span
            self.records_per_s = self._iv_records / span
            if self._iv_limited:  # a sample where the spool ran dry says nothing about the pipe
                self._rates.append((now, self.bytes_per_s, self.records_per_s))
                self._started = True
                self._drain_samples += 1
            else:  # the spool ran dry: that drain is over
                self._started, self._drain_samples = False, 0
            while self._rates and self._rates[0][0] < now - RATE_MEMORY_S:
                self._rates.popleft()
            self.draining = self._iv_limited
            self._iv_start, self._iv_bytes, self._iv_records, self._iv_limited = now, 0, 0, False
            self._update(now)

    def idle(self) -> None:
        """Caught up: no rate, and one stream wanted (the pump closes the others)."""
        self.draining = False
        self.streams = 1
        self._probe = None
        self._end_narrow()
        self._started, self._drain_samples = False, 0
        self._verdict = None  # the next drain is measured afresh (its path may differ: another hour, another link)
        self.bytes_per_s = self.records_per_s = 0.0
        self._iv_start, self._iv_bytes, self._iv_records, self._iv_limited = None, 0, 0, False

    def throttled(self, now: float) -> float:
        """The service refused a stream over its quota: the delay before that stream reopens."""
        self._throttled_at = now
        delay = min(THROTTLE_MAX_S, THROTTLE_FIRST_S * 2 ** self._throttles)
        self._throttles += 1
        if self.streams < self.max_streams:
            self.streams += 1
            self.window = max(self.window, self._floor())
        return delay

    def backlogged(self, now: float) -> None:
        """The window filled with rows left in the spool: open every allowed stream now."""
        if self.streams >= self.max_streams:
            return
        # A jump from a measured rate is a probe like any other; from nothing it proves nothing.
        self._probe = (now, self.bytes_per_s) if self.bytes_per_s > 0 else None
        self._probe_best = 0.0
        self.streams = self.max_streams
        self.window = max(self.window, self._floor())

    def cpu_sample(self, busy_fraction: float) -> None:
        self.cpu = max(0.0, min(1.0, busy_fraction))

    # ------------------------------------------------------------ answers

    @property
    def min_rtt(self) -> float | None:
        return self._min_rtt

    def rtt_p99(self) -> float | None:
        rtts = sorted(r for _, r in self._rtts)
        return rtts[min(len(rtts) - 1, int(0.99 * len(rtts)))] if rtts else None

    def stall_after(self) -> float:
        """Seconds without an ack, batches in flight, after which the path counts as stalled."""
        return max(STALL_RTTS * (self.rtt_p99() or 0.0), STALL_MIN_S)

    def queueing(self) -> bool:
        floor = self.min_rtt
        return floor is not None and self.srtt is not None and self.srtt > QUEUE_FACTOR * floor + QUEUE_SLACK_S

    def _update(self, now: float) -> None:
        best = max((b for _, b, _ in self._rates), default=0.0)
        floor = self.min_rtt
        if best > 0 and floor is not None:
            self.window = int(min(self.max_bytes, max(self._floor(), GAIN * best * floor)))
        self._judge_probe(now)
        self._judge_narrow(now)
        # Only a drain the window limits may probe: while the spool runs dry (a trickle with
        # jittered acks also "queues") another stream cannot raise the rate.
        if (self._probe is None and self.draining and self.queueing() and self.streams < self.max_streams
                and now >= self._hold_until):
            self._probe = (now, self.bytes_per_s)
            self._probe_best = 0.0
            self.streams = min(self.max_streams, 2 * self.streams)  # 1, 2, 4...: few probes to the maximum
            self.window = max(self.window, self._floor())

    def _judge_probe(self, now: float) -> None:
        # The best sample since the probe began (one noisy sample neither proves nor refutes a
        # gain), over eight base RTTs: not the queued RTT, which the probe is meant to shorten.
        if self._probe is None:
            return
        self._probe_best = max(self._probe_best, self.bytes_per_s)
        if now - self._probe[0] < max(PROBE_S, 8 * (self.min_rtt or 0.0)):
            return
        before = self._probe[1]
        self._probe = None
        if self._probe_best >= PROBE_GAIN * before:
            self._verdict = "quota"
        else:
            self._verdict = "link"
            self._hold_until = now + LINK_HOLD_S

    def _narrowable(self, now: float) -> bool:
        """Every allowed stream open, acks queueing, no verdict: only leaving one out can tell quota from link."""
        return (self._narrow is None and self._probe is None and self._verdict is None and self.draining
                and self.max_streams >= 2 and self.streams >= self.max_streams
                and self.streams_open >= self.streams and self._drain_samples >= MEASURE_SAMPLES
                and self.queueing() and now >= self._hold_until)

    def _judge_narrow(self, now: float) -> None:
        if self._narrow is None:
            if self._narrowable(now):
                recent = [b for t, b, _ in self._rates if t >= now - PROBE_S]
                self._narrow = (now, sum(recent) / len(recent), self.streams)
                self._narrow_rates = []
                self.send_streams = self.streams - 1
            return
        started, before, n = self._narrow
        if self.streams_open < n:  # a stream went away (rotation, throttle): the comparison is void
            self._end_narrow()
            self._hold_until = now + LINK_HOLD_S
            return
        settle = NARROW_SETTLE_RTTS * (self.srtt or 0.0)
        if now - started < settle:
            return
        self._narrow_rates.append(self.bytes_per_s)
        # Samples are taken once per base RTT: a few of them, and at least PROBE_S.
        if now - started < settle + max(PROBE_S, NARROW_SAMPLES * max(MIN_INTERVAL_S, self.min_rtt or 0.0)):
            return
        during = sum(self._narrow_rates) / len(self._narrow_rates)
        self._end_narrow()
        self._verdict = "quota" if during < before * (1 - NARROW_DROP / n) else "link"

    def _end_narrow(self) -> None:
        self._narrow = None
        self._narrow_rates = []
        self.send_streams = None

    def binding(self, now: float) -> str:
        if not self.draining and not self._started:
            return "caught-up"
        # What is known without a rate: a throttle names the quota, a busy thread the CPU.
        if self._throttled_at is not None and now - self._throttled_at < THROTTLE_MEMORY_S:
            return "quota-bound"
        if self.draining and self.cpu >= CPU_BOUND:
            return "cpu-bound"
        if self._drain_samples < MEASURE_SAMPLES:
            return "measuring"
        if self.queueing():
            if self._verdict is not None:
                return f"{self._verdict}-bound"
            # Only a probe (one more stream, rate up or not) tells a quota from the link.
            probing = self._probe is not None or self._narrow is not None
            return "measuring" if probing or self.streams < self.max_streams or self._narrowable(now) else "queue-bound"
        return "latency-bound"

    def figures(self, now: float) -> Figures:
        floor = self.min_rtt
        return Figures(self.binding(now), None if self.srtt is None else self.srtt * 1000,
                       None if floor is None else floor * 1000, self.records_per_s, self.bytes_per_s,
                       self.window, self.inflight_bytes, self.streams_open, self.cpu)
