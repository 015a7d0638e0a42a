"""The binding limit the benchmark and the drill judge a drain by (ops/drainlimit.py), and the bench's steady state."""

from __future__ import annotations

import argparse

import pytest

from ops import drainlimit, drill, wan
from ops.bench_drain import steady_state
from ops.drillsink import SinkWatch
from simulators.kit.wait import wait_until


def test_the_lowest_measured_limit_binds_and_unmeasured_ones_are_left_out():
    # 20 Mbit/s at 125 B/reading = 20,000/s; 4 x 15,000 = 60,000/s; 4 x 80,000 in flight over 0.2 s = 1.6M/s,
    # but 64 MB at 125 B is 512,000 readings: 2.56M/s, so the records bound the window.
    known = drainlimit.limits(streams=4, quota_per_stream=15_000, link_bps=20e6, wire_bytes_per_reading=125,
                              window_records=320_000, window_bytes=64_000_000, bytes_per_reading=125, rtt_s=0.2)
    assert known == {"link": 20_000, "quota": 60_000, "window": 1_600_000}
    assert drainlimit.binding(known) == ("link", 20_000)
    assert drainlimit.describe(known).endswith("= link")
    # The byte bound binds the window when readings are large.
    assert drainlimit.limits(streams=1, window_records=80_000, window_bytes=1_000_000, bytes_per_reading=100,
                             rtt_s=0.1) == {"window": 100_000}
    # Nothing measured: no limit, never a made-up one.
    assert drainlimit.limits(streams=4) == {} and drainlimit.binding({}) is None
    fig = drainlimit.figures({}, 1000.0)
    assert "binding_limit_rate" not in fig and set(fig["not_measured"]) == {"link", "quota", "window", "no-limit"}


class FakeProbe:
    def forwarder(self) -> dict:
        return {"streams": 4, "max_inflight_records": 320_000, "max_inflight_bytes": 64 << 20}


def test_the_drill_judges_the_drain_by_the_lowest_limit_not_only_the_link():
    args = argparse.Namespace(quota_per_stream=None, no_limit_rate=None)
    link = wan.Link(50, "20mbit", 0)
    # 150 B/reading on the wire: the link carries 16,667/s; the emulator's quota of 1,000/s per stream x 4 binds.
    wan_fig = wan.link_figures(link, sent_bytes=15_000_000, delivered=100_000, drain_s=50.0)
    shaper = argparse.Namespace(link=link)
    fig = drill.drain_limit(args, FakeProbe(), lambda: {"quota_records_per_s": 1000.0}, wan_fig, shaper,
                            {"measuring": 1, "quota-bound": 9}, [210.0, 205.0], None)
    assert fig["binding"] == "quota" and fig["binding_limit_rate"] == 4000.0
    assert fig["limits"]["link"] == pytest.approx(16_666.7, abs=0.1)
    assert fig["limits"]["window"] == pytest.approx(320_000 / 0.205, rel=1e-3)
    assert fig["fraction_of_limit"] == 0.5 and wan_fig["fraction_of_limit"] == 0.5  # 2,000/s of 4,000/s
    assert wan_fig["link_capacity_rate"] == pytest.approx(16_666.7, abs=0.1)
    text = "\n".join(wan.render(wan_fig) + drainlimit.render(fig, binding_lines=False))
    assert "= quota" in text and "0.50 of the limit" in text and "quota-bound 90%" in text
    assert "no-limit" in text  # said to be not measured, not silently dropped


def test_steady_state_leaves_out_the_start_and_says_what_it_cost():
    # Nothing for 0.5 s, then 100,000 rows/s: 100,000 rows end at 1.5 s.
    series = [(t / 100, max(0, int((t / 100 - 0.5) * 100_000))) for t in range(0, 151)]
    out = steady_state(series, 0, 100_000)
    assert out["steady"] == pytest.approx(100_000, rel=0.02)
    assert out["first_s"] == pytest.approx(0.51, abs=0.01)
    assert out["start_cost_s"] == pytest.approx(0.5, abs=0.03)


class _Sink:
    """The sink's max_seq as the drill's verifier reports it, moving along a script."""

    def __init__(self, tops: list[int]):
        self.tops = tops
        self.looks = 0

    def progress(self, appliance_id: str) -> int:
        self.looks += 1
        return self.tops[min(self.looks - 1, len(self.tops) - 1)]


def test_the_drill_times_the_drain_by_the_uplink_bytes_between_5_and_95_percent():
    # The sink lands batches late and in bursts (at their acks); the link's bytes flow evenly.
    sink = _Sink([100, 100, 100, 300, 300, 900, 1000, 1000])
    sent = iter([0, 0, 1000, 3000, 5000, 7000, 9000, 9000])
    with SinkWatch(sink, "app", start=100, last=1000, uplink_bytes=lambda: next(sent), interval=0.01) as watch:
        wait_until(lambda: watch.done is not None, 10, "the watch to see the whole backlog")
    looks = watch.looks
    assert len(looks) == 7 and sink.looks == 7  # it stopped looking once the backlog was in
    fig = watch.figures(looks[0][0] - 0.5)
    assert fig["readings"] == 900 and fig["uplink_bytes"] == 9000 and fig["timed_by"] == "uplink bytes"
    assert fig["first_delivery_s"] == pytest.approx(looks[3][0] - looks[0][0] + 0.5, abs=0.01)
    # 5% of 9,000 bytes = 450 (between looks 1 and 2), 95% = 8,550 (between 5 and 6).
    lo = looks[1][0] + (looks[2][0] - looks[1][0]) * 450 / 1000
    hi = looks[5][0] + (looks[6][0] - looks[5][0]) * 1550 / 2000
    assert fig["rate"] == pytest.approx(0.9 * 900 / (hi - lo), rel=0.01)
    assert fig["seconds"] == pytest.approx(900 / fig["rate"], rel=0.01)


def test_without_an_uplink_counter_the_drain_is_timed_by_the_sinks_rows():
    sink = _Sink([100, 100, 300, 500, 700, 900, 1000])
    with SinkWatch(sink, "app", start=100, last=1000, interval=0.01) as watch:
        wait_until(lambda: watch.done is not None, 10, "the watch to see the whole backlog")
    looks = watch.looks
    fig = watch.figures(looks[0][0])
    # 5% of the 900 backlog = 145 (between looks 1 and 2), 95% = 955 (between 5 and 6).
    lo = looks[1][0] + (looks[2][0] - looks[1][0]) * 45 / 200
    hi = looks[5][0] + (looks[6][0] - looks[5][0]) * 55 / 100
    assert fig["timed_by"] == "sink rows" and fig["rate"] == pytest.approx(810 / (hi - lo), rel=0.01)


def test_a_backlog_in_within_one_look_is_not_timed():
    with SinkWatch(_Sink([5, 1000]), "app", start=5, last=1000, interval=0.01) as watch:
        wait_until(lambda: watch.done is not None, 10, "the watch to see the whole backlog")
    fig = watch.figures(watch.looks[0][0])
    assert fig["readings"] == 995 and fig["rate"] is None and fig["seconds"] is None
