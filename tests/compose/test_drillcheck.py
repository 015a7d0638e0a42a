"""The drill's verdict arithmetic (ops/drillcheck.py): pure, no Docker needed."""

from __future__ import annotations

import pytest

from ops import drillcheck as dc


def view(min_seq=1, max_seq=100, missing=(), unexplained=(), duplicates=0):
    return dc.SinkView(min_seq=min_seq, max_seq=max_seq, missing=list(missing), unexplained=list(unexplained),
                       duplicates=duplicates, rows=0)


def test_everything_delivered_passes_and_counts_duplicates_of_the_drill_only():
    v = dc.verdict(10, 90, view(duplicates=25), duplicates_before=5, drained=True)
    assert v.ok and v.window_seqs == 81 and v.delivered_in_window == 81
    assert v.duplicates_during_drill == 20 and v.reasons == []


def test_gap_covered_by_a_loss_marker_is_explained_not_a_failure():
    v = dc.verdict(1, 100, view(missing=[(40, 49)], unexplained=[]), 0, True)
    assert v.ok and v.explained_missing == 10 and v.delivered_in_window == 90


def test_unexplained_gap_inside_the_window_fails():
    v = dc.verdict(1, 100, view(missing=[(40, 49)], unexplained=[(45, 46)]), 0, True)
    assert not v.ok and v.unexplained_missing == [(45, 46)] and v.explained_missing == 8
    assert "2 seq(s) missing" in v.reasons[0]


def test_gaps_outside_the_window_are_not_the_drills_business():
    v = dc.verdict(50, 100, view(missing=[(5, 9)], unexplained=[(5, 9)]), 0, True)
    assert v.ok


def test_tail_never_delivered_fails():
    v = dc.verdict(1, 120, view(max_seq=100), 0, True)
    assert not v.ok and v.tail_missing == (101, 120)


def test_sink_that_never_saw_the_start_of_the_window_fails():
    v = dc.verdict(1, 100, view(min_seq=30), 0, True)
    assert not v.ok and any("older than anything" in r for r in v.reasons)


def test_empty_sink_fails_for_the_whole_window():
    v = dc.verdict(1, 10, view(min_seq=None, max_seq=None), 0, True)
    assert not v.ok and v.tail_missing == (1, 10) and v.delivered_in_window == 0


def test_undrained_spool_fails_even_without_gaps():
    v = dc.verdict(1, 100, view(), 0, drained=False)
    assert not v.ok and "did not drain" in v.reasons[0]


@pytest.mark.parametrize("samples,expected", [
    ([], None), ([(0.0, 5.0)], None), ([(0.0, 0.0), (2.0, 100.0)], 50.0), ([(1.0, 10.0), (1.0, 20.0)], None),
])
def test_rate(samples, expected):
    assert dc.rate(samples) == expected


@pytest.mark.parametrize("depth,drain,ingest,expected", [
    (0, None, None, 0.0), (100, 60.0, 10.0, 2.0), (100, 10.0, 10.0, None), (100, None, 0.0, None),
])
def test_eta(depth, drain, ingest, expected):
    assert dc.eta_s(depth, drain, ingest) == expected


def test_render_names_the_verdict_and_the_reasons():
    v = dc.verdict(1, 120, view(max_seq=100), 0, True)
    text = dc.render({"appliance_id": "a1", "verifier": "emulator", "cut_s": 60, "egress_network": "p_egress",
                      "peak_depth": 3000, "peak_oldest_age_s": 61.0, "runway_at_restore_s": 7200.0,
                      "drain_s": None, "drain_rate": None, "events": [], "verdict": v.to_dict()})
    assert "FAILED" in text and "101..120 never reached the sink" in text
