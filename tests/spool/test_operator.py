"""What an operator may ask of the spool from the admin page: retry a dead letter, checkpoint the WAL."""

from __future__ import annotations

import pytest

from edge.spool import BadRequest

from .conftest import accounting, items


def test_retry_dead_letter_appends_it_again_under_a_new_seq(open_spool, spool_path):
    s = open_spool()
    s.append(items(5))
    original = dict(s.peek(0, 10))[3]
    s.dead_letter(3, "schema mismatch")
    (dl,) = s.dead_letters(10)
    result = s.retry_dead_letter(dl["id"])
    assert result.first_seq == result.last_seq == 6
    acc = accounting(spool_path)
    assert acc["markers"] == [(3, 3, "dead_letter")]  # the old slot stays explained
    assert acc["readings"][6] == original
    (dl,) = s.dead_letters(10)
    assert dl["retried_seq"] == 6 and dl["body"] == original  # evidence kept
    with pytest.raises(BadRequest, match="already retried as seq 6"):
        s.retry_dead_letter(dl["id"])
    with pytest.raises(BadRequest, match="no dead letter"):
        s.retry_dead_letter(999)


def test_checkpoint_truncates_the_wal(open_spool, spool_path):
    s = open_spool()
    for k in range(20):
        s.append(items(500, start=500 * k, pad=50))
    wal = spool_path.with_name(spool_path.name + "-wal")
    assert wal.stat().st_size > 0
    detail = s.checkpoint("TRUNCATE")
    assert "completed" in detail and wal.stat().st_size == 0
    with pytest.raises(BadRequest):
        s.checkpoint("EVERYTHING")
