import random

import pytest

from edge.backoff import Backoff, ceiling, full_jitter


@pytest.mark.parametrize("attempt,expected", [(0, 0.5), (1, 1.0), (2, 2.0), (5, 16.0), (6, 30.0), (10_000, 30.0)])
def test_ceiling_doubles_then_caps(attempt, expected):
    assert ceiling(attempt, 0.5, 30.0) == expected


@pytest.mark.parametrize("rand", [0.0, 0.25, 0.999])
def test_full_jitter_is_uniform_below_the_ceiling(rand):
    assert full_jitter(3, 0.5, 30.0, rand) == pytest.approx(4.0 * rand)


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_rand_out_of_range_is_refused(bad):
    with pytest.raises(ValueError):
        full_jitter(0, 1, 2, bad)


def test_negative_attempt_is_refused():
    with pytest.raises(ValueError):
        ceiling(-1, 1, 2)


def test_backoff_grows_resets_and_never_exceeds_cap():
    b = Backoff(0.1, 2.0, rng=random.Random(7))
    delays = [b.next_delay() for _ in range(50)]
    assert all(0 <= d <= 2.0 for d in delays)
    assert b.attempt == 50
    assert max(delays[10:]) > 0.5  # later attempts may wait longer than the first ceiling
    b.reset()
    assert b.attempt == 0
    assert b.next_delay() <= 0.1
