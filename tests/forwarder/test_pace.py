"""The pace (window, streams, binding) on synthetic acks: pure, time passed in."""

from __future__ import annotations

import pytest

from edge.forward.pace import LINK_HOLD_S, MEASURE_SAMPLES, PROBE_S, Pace

BATCH = 100_000  # bytes per batch


def drive(p: Pace, t: float, seconds: float, rtt: float, rate: float, limited: bool = True, until=None) -> float:
    """Acks of BATCH bytes at ``rate`` bytes/s, each after ``rtt``, for ``seconds`` (or until ``until(p)``)."""
    step = BATCH / rate
    end = t + seconds
    while t < end and not (until and until(p)):
        t += step
        p.sent(BATCH)
        p.acked(t, BATCH, 1000, rtt, limited)
    return t


def test_the_window_never_drops_below_the_old_fixed_window_of_four_batches():
    p = Pace(max_bytes=100_000_000, min_bytes=1000, max_streams=1, initial_bytes=1000)
    drive(p, 0.0, 2.0, 0.001, 1_000_000)  # a tiny rate x RTT
    assert p.window == 4 * BATCH


def test_a_latency_bound_window_grows_to_rate_times_rtt_and_stops_at_the_memory_bound():
    p = Pace(max_bytes=8_000_000, min_bytes=BATCH, max_streams=1, initial_bytes=400_000)
    t, rtt = 0.0, 0.15
    # rate = window / rtt: the window doubles about once per RTT
    for _ in range(8):
        t = drive(p, t, 4 * rtt, rtt, p.window / rtt)
    assert p.window == 8_000_000
    assert p.binding(t) == "latency-bound"
    f = p.figures(t).as_dict()
    assert f["rtt_ms"] == pytest.approx(150, abs=1) and f["window_bytes"] == 8_000_000


def test_a_rate_cap_sets_the_window_to_twice_the_bandwidth_delay_product():
    p = Pace(max_bytes=100_000_000, min_bytes=BATCH, max_streams=1)
    drive(p, 0.0, 2.0, 0.1, 5_000_000)
    assert p.window == pytest.approx(2 * 5_000_000 * 0.1, rel=0.05)


def test_queueing_acks_probe_a_second_stream_which_proves_a_quota():
    p = Pace(max_bytes=100_000_000, min_bytes=BATCH, max_streams=4)
    t = drive(p, 0.0, 1.0, 0.05, 1_000_000)  # floor RTT 50 ms
    # Same rate, RTT x4: acks queue somewhere; a probe (one more stream) starts.
    t = drive(p, t, 1.0, 0.2, 1_000_000, until=lambda p: p.streams == 2)
    assert p.queueing() and p.streams == 2
    assert p.binding(t) == "measuring"  # until the probe shows whether a stream more helps
    # The second stream doubled the rate: a quota, and (still queueing) the next probe starts.
    t = drive(p, t, PROBE_S + 1.0, 0.2, 2_000_000, until=lambda p: p.streams == 4)
    assert p.streams == 4 and p.binding(t) == "quota-bound"  # streams double: 1, 2, 4
    assert p.window >= 4 * BATCH * 4  # each stream gets at least the old fixed window


def test_a_probe_that_does_not_raise_the_rate_means_the_link_binds():
    p = Pace(max_bytes=100_000_000, min_bytes=BATCH, max_streams=4)
    t = drive(p, 0.0, 1.0, 0.05, 1_000_000)
    t = drive(p, t, 1.0, 0.2, 1_000_000, until=lambda p: p.streams == 2)
    assert p.streams == 2
    t = drive(p, t, PROBE_S + 1.0, 0.2, 1_000_000)  # no gain from the second stream
    assert p.binding(t) == "link-bound"
    t = drive(p, t, LINK_HOLD_S / 2, 0.2, 1_000_000)
    assert p.streams == 2  # no new probe while the verdict holds


def test_a_throttle_is_quota_bound_asks_for_a_stream_and_backs_off_more_each_time():
    p = Pace(max_bytes=10_000_000, min_bytes=BATCH, max_streams=2)
    t = drive(p, 0.0, 1.0, 0.05, 1_000_000)
    delays = [p.throttled(t) for _ in range(3)]
    assert delays == sorted(delays) and delays[0] < delays[-1]
    assert p.streams == 2  # capped at max_streams
    assert p.binding(t) == "quota-bound"
    t = drive(p, t, 0.5, 0.05, 1_000_000)
    assert p.throttled(t) == delays[0]  # an ack resets the backoff


def test_cpu_and_caught_up():
    p = Pace(max_bytes=10_000_000, min_bytes=BATCH, max_streams=1)
    t = drive(p, 0.0, 1.0, 0.01, 10_000_000)
    p.cpu_sample(0.95)
    assert p.binding(t) == "cpu-bound"
    p.idle()
    assert p.binding(t) == "caught-up"
    # Samples while the spool runs dry say nothing about the pipe: the window does not shrink on them.
    before = p.window
    drive(p, t, 1.0, 0.01, 100_000, limited=False)
    assert p.window == before


def test_a_backlog_asks_for_every_stream_at_once_and_caught_up_for_one():
    p = Pace(max_bytes=100_000_000, min_bytes=BATCH, max_streams=4)
    p.sent(BATCH)
    p.backlogged(0.0)
    assert p.streams == 4 and p.window >= 4 * BATCH * 4  # each stream gets its floor of the window
    p.idle()
    assert p.streams == 1


def test_a_backlog_jump_from_a_measured_rate_is_judged_like_a_probe():
    p = Pace(max_bytes=100_000_000, min_bytes=BATCH, max_streams=4)
    t = drive(p, 0.0, 1.0, 0.05, 1_000_000)
    p.backlogged(t)
    t = drive(p, t, PROBE_S + 1.0, 0.2, 3_000_000)  # the extra streams tripled the rate: a quota
    assert p.binding(t) == "quota-bound"


def test_the_stall_interval_is_five_p99_rtts_and_never_under_three_seconds():
    p = Pace(max_bytes=100_000_000, min_bytes=BATCH, max_streams=1)
    assert p.stall_after() == 3.0  # no RTT measured yet
    drive(p, 0.0, 1.0, 0.15, 1_000_000)
    assert p.stall_after() == 3.0
    t = drive(p, 10.0, 2.0, 1.0, 1_000_000)
    assert p.stall_after() == 5.0  # p99 RTT 1 s
    drive(p, t + 40.0, 2.0, 0.15, 1_000_000)
    assert p.stall_after() == 3.0  # slow RTTs older than RTT_MEMORY_S are forgotten


def test_a_trickle_with_jittered_acks_does_not_probe_for_streams():
    p = Pace(max_bytes=100_000_000, min_bytes=BATCH, max_streams=4)
    t = drive(p, 0.0, 1.0, 0.02, 1_000_000, limited=False)
    drive(p, t, 3.0, 0.3, 1_000_000, limited=False)  # "queueing" acks, but the spool, not the window, limits
    assert p.streams == 1


def test_a_drain_says_measuring_until_its_rate_is_measured_never_a_guess():
    """From a standing start with a backlog: no rate, no RTT, then acks queueing behind the first window."""
    p = Pace(max_bytes=100_000_000, min_bytes=BATCH, max_streams=4, initial_bytes=4 * BATCH)
    assert p.binding(0.0) == "caught-up"
    for _ in range(4):
        p.sent(BATCH)  # the window fills: a drain began
    p.backlogged(0.0)  # every stream at once, from nothing: no probe to judge
    p.streams_open = p.streams
    assert p.binding(0.0) == "measuring"  # was "caught-up": nothing acked yet
    t, rtt, seen = 0.0, 0.05, []
    while p._drain_samples < MEASURE_SAMPLES:
        t += 0.01
        rtt += 0.01  # each ack later than the last: the first window queues somewhere
        p.sent(BATCH)
        p.acked(t, BATCH, 1000, rtt, True)
        seen.append(p.binding(t))
    assert set(seen[:-1]) == {"measuring"}  # was "link-bound" from the first sample on, with no link measured
    # Measured now: acks queue, every stream opened at once, so no stream added can be judged:
    # one is left out instead (a narrowing probe), and until it is judged nothing is claimed.
    assert p.queueing() and p.send_streams == 3 and p.binding(t) == "measuring"


def cold_drain(p: Pace, rate_of, seconds: float, rtt: float = 0.6) -> tuple[float, list[str]]:
    """A drain from nothing with a backlog: every stream opens at once, acks queue (RTT ``rtt``
    against a 50 ms floor), the delivery rate is ``rate_of(streams sent on)`` bytes/s."""
    t = 0.0
    p.sent(BATCH)
    p.acked(t, BATCH, 1000, 0.05, True)  # the floor RTT, from the first batch
    p.backlogged(t)
    p.streams_open = p.streams
    seen = []
    end = t + seconds
    while t < end:
        t += BATCH / rate_of(p.send_streams or p.streams_open)
        p.sent(BATCH)
        p.acked(t, BATCH, 1000, rtt, True)
        seen.append(p.binding(t))
    return t, seen


def test_a_cold_drain_behind_a_per_stream_quota_is_told_by_leaving_one_stream_out():
    p = Pace(max_bytes=100_000_000, min_bytes=BATCH, max_streams=4)
    t, seen = cold_drain(p, lambda n: n * 1_000_000, 8.0)  # each stream carries its quota
    assert "measuring" in seen and p.binding(t) == "quota-bound"  # was queue-bound for good
    assert p.send_streams is None  # the probe ended: every stream sends again
    assert "queue-bound" not in seen


def test_a_cold_drain_behind_a_shared_link_is_told_by_leaving_one_stream_out():
    p = Pace(max_bytes=100_000_000, min_bytes=BATCH, max_streams=4)
    t, seen = cold_drain(p, lambda n: 4_000_000, 8.0)  # the others take up the left-out stream's share
    assert p.binding(t) == "link-bound" and p.send_streams is None
    i = seen.index("link-bound")
    assert set(seen[i:]) == {"link-bound"}  # one probe per drain: the verdict holds


def test_a_narrowing_probe_cut_short_by_a_lost_stream_claims_nothing():
    p = Pace(max_bytes=100_000_000, min_bytes=BATCH, max_streams=4)
    t, _ = cold_drain(p, lambda n: n * 1_000_000, 0.8)  # the probe has begun
    assert p.send_streams == 3
    p.streams_open = 3  # a stream is lost (rotation) mid-probe
    t = drive(p, t, 0.5, 0.6, 3_000_000)
    assert p.send_streams is None and p.binding(t) == "queue-bound"


def test_one_allowed_stream_cannot_be_probed_and_stays_queue_bound():
    p = Pace(max_bytes=100_000_000, min_bytes=BATCH, max_streams=1)
    p.streams_open = 1
    t = drive(p, 0.0, 1.0, 0.05, 1_000_000)
    t = drive(p, t, 3.0, 0.6, 1_000_000)
    assert p.send_streams is None and p.binding(t) == "queue-bound"


def test_a_new_drain_forgets_the_last_drains_verdict():
    p = Pace(max_bytes=100_000_000, min_bytes=BATCH, max_streams=4)
    t = drive(p, 0.0, 1.0, 0.05, 1_000_000)
    t = drive(p, t, 1.0, 0.2, 1_000_000, until=lambda p: p.streams == 2)
    t = drive(p, t, PROBE_S + 1.0, 0.2, 1_000_000)
    assert p.binding(t) == "link-bound"
    p.idle()
    assert p.binding(t) == "caught-up"
    p.sent(p.window)
    assert p.binding(t) == "measuring"
