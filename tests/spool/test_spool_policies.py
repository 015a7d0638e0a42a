"""Budget policies, loss markers and their extension, protection, expiry, dead letters."""

import time

import pytest

from edge.budget import ROW_OVERHEAD
from edge.encode import decode
from edge.spool import BadRequest, SpoolFull

from .conftest import accounting, items

PAD = 100


def row_bytes(i: int = 0) -> int:
    return len(items(1, start=i, pad=PAD)[0][1]) + ROW_OVERHEAD


def fill(s, n=10):
    return s.append(items(n, pad=PAD))


def test_block_raises_and_consumes_nothing(open_spool, spool_path):
    s = open_spool(max_bytes=10 * row_bytes() + 5, when_full="block")
    fill(s)
    with pytest.raises(SpoolFull) as e:
        s.append(items(1, start=10, pad=PAD))
    assert e.value.cause == "budget"
    st = s.stats()
    assert st["next_seq"] == 11 and st["depth_rows"] == 10 and st["dropped_total"] == 0
    s.ack(1)
    assert s.append(items(1, start=10, pad=PAD)).first_seq == 11
    accounting(spool_path)


def test_disk_low_counts_as_full(open_spool):
    s = open_spool(min_free_bytes=1 << 62)
    with pytest.raises(SpoolFull) as e:
        s.append(items(1))
    assert e.value.cause == "disk_low"


def test_drop_newest_marks_and_extends(open_spool, spool_path):
    s = open_spool(max_bytes=10 * row_bytes() + 5, when_full="drop_newest")
    fill(s)
    results = [s.append(items(2, start=10 + 2 * k, pad=PAD)) for k in range(3)]
    assert [(r.first_seq, r.last_seq, r.stored, r.dropped) for r in results] == [
        (11, 12, False, 2), (13, 14, False, 2), (15, 16, False, 2)]
    acc = accounting(spool_path)
    assert acc["markers"] == [(11, 16, "drop_newest")]
    assert sorted(acc["readings"]) == list(range(1, 11))
    st = acc["stats"]
    assert st["dropped"] == {"drop_newest": 6} and st["loss_markers_written"] == 1
    # Once the marker is delivered, a later drop starts a new one.
    s.ack(11)
    assert s.watermark() == 16
    assert fill(s).first_seq == 17
    assert s.append(items(1, start=20, pad=PAD)).stored is False
    acc = accounting(spool_path)
    assert acc["markers"] == [(27, 27, "drop_newest")]
    assert acc["stats"]["loss_markers_written"] == 2


def test_drop_oldest_respects_protection_and_extends(open_spool, spool_path):
    s = open_spool(max_bytes=10 * row_bytes() + 5, when_full="drop_oldest")
    fill(s)
    s.set_protected(3)
    r = s.append(items(2, start=10, pad=PAD))
    assert (r.first_seq, r.last_seq, r.stored) == (11, 12, True) and r.dropped >= 2
    acc = accounting(spool_path)
    (mfrom, mto, reason), = acc["markers"]
    assert (mfrom, reason) == (4, "drop_oldest") and mto == 3 + r.dropped
    assert {1, 2, 3, 11, 12} <= set(acc["readings"])
    assert acc["stats"]["depth_bytes"] <= 10 * row_bytes() + 5
    r2 = s.append(items(2, start=12, pad=PAD))
    acc = accounting(spool_path)
    (mfrom2, mto2, _), = acc["markers"]  # extended, not a second marker
    assert mfrom2 == 4 and mto2 == mto + r2.dropped
    st = acc["stats"]
    assert st["dropped"] == {"drop_oldest": r.dropped + r2.dropped} and st["loss_markers_written"] == 1
    # Exactly the dropped seqs are covered: readings + marker range = every undelivered seq.
    assert set(acc["readings"]) | set(range(mfrom2, mto2 + 1)) == set(range(1, st["next_seq"]))


def test_drop_oldest_with_everything_protected_drops_the_batch(open_spool, spool_path):
    s = open_spool(max_bytes=10 * row_bytes() + 5, when_full="drop_oldest")
    fill(s)
    s.set_protected(10)
    r = s.append(items(3, start=10, pad=PAD))
    assert r.stored is False
    acc = accounting(spool_path)
    assert sorted(acc["readings"]) == list(range(1, 11))
    assert acc["markers"] == [(11, 13, "drop_newest")]


def test_batch_bigger_than_budget_under_drop_oldest(open_spool, spool_path):
    s = open_spool(max_bytes=5 * row_bytes(), when_full="drop_oldest")
    fill(s, 2)
    r = s.append(items(20, start=2, pad=PAD))
    assert r.stored is False  # dropping old data would not make it fit: keep the old data
    assert sorted(accounting(spool_path)["readings"]) == [1, 2]


def test_expiry_by_age(open_spool, spool_path):
    now = time.time_ns() // 1000
    s = open_spool(max_age_s=60)
    s.append(items(5, ts=now - 120_000_000))
    s.append(items(3, start=5, ts=now))
    s.append(items(2, start=8, ts=now - 120_000_000))  # old again, but behind young rows: kept
    s.set_protected(1)
    assert s.expire() == 4
    acc = accounting(spool_path)
    assert acc["markers"] == [(2, 5, "expired")]
    assert sorted(acc["readings"]) == [1, 6, 7, 8, 9, 10]
    assert acc["stats"]["dropped"] == {"expired": 4}
    assert s.expire() == 0  # a lone expired marker is left alone
    assert decode(s.peek(1, 1)[0][1]).loss_reason == "expired"


def test_dead_letter_becomes_one_seq_marker(open_spool, spool_path):
    s = open_spool()
    s.append(items(5))
    original = dict(s.peek(0, 10))[3]
    s.dead_letter(3, "schema mismatch: column x")
    acc = accounting(spool_path)
    assert acc["markers"] == [(3, 3, "dead_letter")]
    assert sorted(acc["readings"]) == [1, 2, 4, 5]
    (dl,) = s.dead_letters(10)
    assert (dl["seq"], dl["body"], dl["reason"]) == (3, original, "schema mismatch: column x")
    assert acc["stats"]["dead_lettered"] == 1
    # The marker itself rejected: it leaves the table and raises an alarm.
    s.dead_letter(3, "rejected again")
    (alarm,) = s.alarms()
    assert alarm["name"] == "unexplained_loss" and alarm["value"]["detail"]["count"] == 1
    assert [q for q, _ in s.peek(0, 10)] == [1, 2, 4, 5]
    with pytest.raises(BadRequest):
        s.dead_letter(99, "nope")
    s.ack(5)
    assert s.stats()["depth_rows"] == 0 and s.stats()["depth_bytes"] == 0


def test_byte_counter_matches_table(open_spool, spool_path):
    s = open_spool(max_bytes=20 * row_bytes(), when_full="drop_oldest")
    for k in range(10):
        s.append(items(7, start=7 * k, pad=PAD))
        if k % 3 == 0:
            s.ack(s.watermark() + 2)
    s.dead_letter(s.peek(s.watermark(), 1)[0][0], "x")
    actual = s._conn.execute("SELECT count(*), sum(length(body)) FROM readings").fetchone()
    st = accounting(spool_path)["stats"]
    assert st["depth_rows"] == actual[0]
    assert st["depth_bytes"] == actual[1] + actual[0] * ROW_OVERHEAD


def test_expiry_in_chunks_extends_one_marker(open_spool, spool_path, monkeypatch):
    monkeypatch.setattr("edge.spool.log.EXPIRE_CHUNK", 7)
    monkeypatch.setattr("edge.spool.log.EXPIRE_CHUNKS_PER_CALL", 2)
    now = time.time_ns() // 1000
    s = open_spool(max_age_s=60)
    s.append(items(30, ts=now - 120_000_000))
    s.append(items(2, start=30, ts=now))
    # Two chunks of 7 rows per call; after the first, each chunk starts with the marker it extends.
    assert s.expire() == 7 + 6
    assert s.expire() == 6 + 6
    assert s.expire() == 5
    assert s.expire() == 0
    acc = accounting(spool_path)
    assert acc["markers"] == [(1, 30, "expired")]
    assert sorted(acc["readings"]) == [31, 32] and acc["stats"]["dropped"] == {"expired": 30}
