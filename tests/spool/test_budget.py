"""Pure budget arithmetic: fit, disk headroom, drop planning, rates, runway, ETA."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge import budget


@pytest.mark.parametrize(
    "max_bytes, used, free, min_free, expected",
    [
        (1000, 0, None, 0, 1000),  # statvfs unavailable: the configured budget
        (1000, 100, 10_000, 500, 1000),  # plenty of disk
        (1000, 100, 600, 500, 200),  # only 100 bytes of headroom left
        (1000, 100, 400, 500, 100),  # under min_free: no growth, but no shrink below use
    ],
)
def test_effective_budget(max_bytes, used, free, min_free, expected):
    assert budget.effective_budget(max_bytes, used, free, min_free) == expected


def test_fits_boundary():
    assert budget.fits(900, 100, 1000)
    assert not budget.fits(901, 100, 1000)


@pytest.mark.parametrize(
    "cands, need, expected",
    [
        ([(1, 10), (2, 10), (3, 10)], 15, (2, 20)),
        ([(1, 10), (2, 10)], 20, (2, 20)),
        ([(1, 10), (2, 10)], 25, (2, 20)),  # not enough: everything, short
        ([(1, 10)], 0, (0, 0)),
        ([], 5, (0, 0)),
    ],
)
def test_rows_to_drop(cands, need, expected):
    assert budget.rows_to_drop(cands, need) == expected


@given(st.lists(st.integers(1, 1000), max_size=50), st.integers(0, 20_000))
def test_rows_to_drop_minimal(sizes, need):
    count, freed = budget.rows_to_drop(list(enumerate(sizes)), need)
    assert freed == sum(sizes[:count])
    if freed >= need and count:
        assert freed - sizes[count - 1] < need  # one row fewer would not do
    else:
        assert count == (len(sizes) if need > 0 else 0)


def test_expired_prefix_stops_at_first_young_row():
    assert budget.expired_prefix([(1, 5), (2, 6), (3, 20), (4, 1)], cutoff_ts=10) == 2
    assert budget.expired_prefix([], 10) == 0


def test_rate_windows():
    pts = [(0.0, 0), (100.0, 1000), (295.0, 2000), (300.0, 2100)]
    assert budget.rate(pts, (310.0, 2200), 10.0) == pytest.approx(10.0)  # from the sample at 300
    assert budget.rate(pts, (310.0, 2200), 300.0) == pytest.approx(1200 / 210)  # from the sample at 100
    assert budget.rate([], (10.0, 5), 10.0) is None
    assert budget.rate([(10.0, 5)], (10.0, 5), 10.0) is None
    # A sparse table: no sample inside the window, use the newest before it.
    assert budget.rate([(0.0, 0)], (100.0, 500), 10.0) == pytest.approx(5.0)


def test_runway_and_eta():
    assert budget.runway_s(1000, 500, 10.0, 5.0, 10.0) == pytest.approx(10.0)
    assert budget.runway_s(1000, 500, 5.0, 10.0, 10.0) is None  # draining, not filling
    assert budget.runway_s(1000, 500, None, None, 10.0) is None
    assert budget.drain_eta_s(100, 5.0, 15.0) == pytest.approx(10.0)
    assert budget.drain_eta_s(100, 15.0, 5.0) is None
    assert budget.drain_eta_s(0, None, None) == 0.0
    assert budget.used_pct(250, 1000) == 25.0
