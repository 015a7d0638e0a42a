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


def test_a_retry_refused_under_drop_newest_leaves_nothing(open_spool, spool_path):
    """A retry that does not fit is refused whole: no seq, no loss marker, no drop count.

    Inside a shared (group) transaction, as the writer runs it: a SpoolFull there
    lets the rest of the group commit, so the refused retry must not have written.
    """
    from edge.spool import SpoolFull

    s = open_spool(max_bytes=4000, when_full="drop_newest")
    s.append(items(3, pad=200))
    s.dead_letter(2, "schema mismatch")
    (dl,) = s.dead_letters(10)
    k = 10
    while s.append(items(1, start=k, pad=200)).stored:  # fill the budget until a batch is dropped
        k += 1
    before = accounting(spool_path)
    with s.transaction():
        with pytest.raises(SpoolFull):
            s.retry_dead_letter(dl["id"])
    after = accounting(spool_path)
    assert after["stats"]["next_seq"] == before["stats"]["next_seq"]
    assert after["markers"] == before["markers"]
    assert after["stats"]["dropped"] == before["stats"]["dropped"]
    assert after["stats"]["loss_markers_written"] == before["stats"]["loss_markers_written"]
    (dl,) = s.dead_letters(10)
    assert dl["retried_seq"] is None  # still retryable once there is room
