"""The single writer thread: group commit, futures, errors, back-pressure, close."""

import asyncio
import threading
import time

import pytest

from edge.budget import ROW_OVERHEAD
from edge.spool import BadRequest, SpoolFull
from edge.writer import SpoolWriter, WriterClosed
from simulators.kit.aio import wait_until as async_wait_until
from simulators.kit.mqtt import wait_until

from .conftest import BASE_TS, accounting, items

ROW = len(items(1, pad=50)[0][1]) + ROW_OVERHEAD  # charged bytes of one padded test reading


@pytest.fixture
def make_writer(open_spool):
    writers = []

    def _make(spool_kw=None, **kw):
        w = SpoolWriter(open_spool(**(spool_kw or {})), **kw)
        writers.append(w)
        return w

    yield _make
    for w in writers:
        w.close()


def waiting(writer) -> int:
    """Threads blocked in wait_for_space right now."""
    return len(writer._space._waiters)


def hold(writer):
    """Park the writer thread inside a request until the returned event is set."""
    entered, release = threading.Event(), threading.Event()

    def park(_spool):
        entered.set()
        assert release.wait(10)

    fut = writer.call(park)
    assert entered.wait(10)
    return release, fut


def test_requests_queued_during_a_commit_share_one_transaction(make_writer):
    w = make_writer()
    release, parked = hold(w)
    before = w.spool.commits
    futs = [w.submit(items(3, start=3 * i)) for i in range(50)]
    release.set()
    results = [f.result(10) for f in futs]
    parked.result(10)
    assert w.spool.commits - before == 2  # the parked request's group, then ONE for all 50 appends
    assert [(r.first_seq, r.last_seq) for r in results] == [(1 + 3 * i, 3 + 3 * i) for i in range(50)]


def test_concurrent_threads_are_batched(make_writer):
    w = make_writer()
    before = w.spool.commits
    n_threads, per = 8, 40

    def run():
        for i in range(per):
            w.submit(items(10)).result(10)

    ts = [threading.Thread(target=run) for _ in range(n_threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    commits = w.spool.commits - before
    assert commits < n_threads * per  # fewer transactions than appends: group commit happened
    assert w.spool.next_seq == n_threads * per * 10 + 1


def test_emit_from_asyncio_returns_after_commit(make_writer, spool_path):
    w = make_writer()

    async def main():
        return await asyncio.gather(*(w.emit(items(5, start=5 * i)) for i in range(20)))

    results = asyncio.run(main())
    seqs = sorted(s for r in results for s in range(r.first_seq, r.last_seq + 1))
    assert seqs == list(range(1, 101))
    # Committed: a separate read-only connection sees every row right away.
    assert len(accounting(spool_path)["readings"]) == 100


def test_a_bad_request_fails_alone(make_writer):
    w = make_writer()
    release, _ = hold(w)
    good1 = w.submit(items(2))
    bad = w.submit([(BASE_TS, "not bytes")])
    boom = w.call(lambda _s: 1 / 0)
    good2 = w.submit(items(2, start=2))
    release.set()
    assert good1.result(10).first_seq == 1
    with pytest.raises(BadRequest):
        bad.result(10)
    with pytest.raises(ZeroDivisionError):
        boom.result(10)
    assert good2.result(10).first_seq == 3
    assert w.submit(items(1)).result(10).first_seq == 5  # the thread lives on


def test_block_then_wait_for_space(make_writer):
    w = make_writer({"max_bytes": 20 * ROW + 50})
    w.submit(items(20, pad=50)).result(10)
    with pytest.raises(SpoolFull):
        w.submit(items(20, start=20, pad=50)).result(10)
    assert w.wait_for_space(0.05) is False
    woke = []
    t = threading.Thread(target=lambda: woke.append(w.wait_for_space(10)))
    t.start()
    wait_until(lambda: waiting(w) == 1, 10, "the waiter blocked")
    w.ack(20).result(10)
    t.join(10)
    assert woke == [True]
    assert w.submit(items(20, start=20, pad=50)).result(10).first_seq == 21


def test_wait_for_space_async(make_writer):
    w = make_writer({"max_bytes": 10 * ROW + 50})
    w.submit(items(10, pad=50)).result(10)

    async def main():
        with pytest.raises(SpoolFull):
            await w.emit(items(10, pad=50))
        waiter = asyncio.create_task(w.wait_for_space_async(10))
        await async_wait_until(lambda: waiting(w) == 1, what="the waiter blocked")
        assert not waiter.done()
        w.ack(10)
        assert await waiter is True
        return await w.emit(items(10, pad=50))

    assert asyncio.run(main()).first_seq == 11  # SpoolFull consumed no seq


def test_close_drains_the_queue(make_writer, spool_path):
    w = make_writer()
    release, _ = hold(w)
    futs = [w.submit(items(1, start=i)) for i in range(30)]
    release.set()
    w.close()
    assert [f.result(1).first_seq for f in futs] == list(range(1, 31))
    with pytest.raises(WriterClosed):
        w.submit(items(1)).result(1)
    assert len(accounting(spool_path)["readings"]) == 30
    assert not (spool_path.parent / "spool.db-wal").exists() or (spool_path.parent / "spool.db-wal").stat().st_size == 0


def test_periodic_samples_and_expiry(make_writer, spool_path):
    w = make_writer({"max_age_s": 30}, sample_interval_s=0.05, expire_interval_s=0.05)
    old = time.time_ns() // 1000 - 60_000_000
    w.submit(items(5, ts=old)).result(10)
    acc = wait_until(lambda: (lambda a: a if a["markers"] and not a["stats"]["alarms"]
                                        and len(w.spool.samples(0)) >= 2 else None)(accounting(spool_path)),
                     10, "expiry and two samples")
    assert acc["markers"] == [(1, 5, "expired")]
    assert acc["stats"]["dropped"] == {"expired": 5}


def test_forwarder_protection_through_writer(make_writer, spool_path):
    w = make_writer({"max_bytes": 10 * ROW + 5, "when_full": "drop_oldest"})
    w.submit(items(10, pad=50)).result(10)
    w.set_protected(10).result(10)
    assert w.submit(items(2, start=10, pad=50)).result(10).stored is False
    w.set_protected(5).result(10)
    r = w.submit(items(2, start=12, pad=50)).result(10)
    assert r.stored and r.dropped >= 2
    acc = accounting(spool_path)
    assert {1, 2, 3, 4, 5} <= set(acc["readings"]) and acc["markers"][0][0] == 6


def test_mixed_group_in_one_transaction(make_writer, spool_path):
    w = make_writer({"max_bytes": 20 * ROW + 50, "when_full": "drop_newest"})
    release, _ = hold(w)
    before = w.spool.commits
    futs = [
        w.submit(items(10, pad=50)),  # 1..10
        w.submit(items(5, start=10, pad=50)),  # 11..15, same executemany
        w.submit([(BASE_TS, None)]),  # bad: fails alone
        w.ack(3),
        w.submit(items(5, start=15, pad=50)),  # 16..20
        w.dead_letter(12, "rejected"),
        w.call(lambda s: s.stats()["next_seq"]),  # the writer's own view sees the pending rows
        w.submit(items(20, start=20, pad=50)),  # 21..40: over budget, dropped with a marker
        w.submit(items(5, start=40, pad=50)),  # 41..45: still over, the marker extends
        w.submit(items(5, start=45, pad=50)),  # 46..50: still over, the marker extends
    ]
    release.set()
    outcomes = []
    for f in futs:
        try:
            outcomes.append(f.result(10))
        except BadRequest:
            outcomes.append("bad")
    assert outcomes[2] == "bad"
    assert (outcomes[0].first_seq, outcomes[1].first_seq, outcomes[4].first_seq) == (1, 11, 16)
    assert outcomes[6] == 21
    assert [(r.first_seq, r.stored) for r in outcomes[7:]] == [(21, False), (41, False), (46, False)]
    assert w.spool.commits - before == 2  # the parked request's group, then everything else in one
    acc = accounting(spool_path)
    assert acc["markers"] == [(12, 12, "dead_letter"), (21, 50, "drop_newest")]
    assert sorted(acc["readings"]) == [4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20]


def test_cancelled_emit_before_pickup_is_not_written(make_writer):
    w = make_writer()
    release, _ = hold(w)

    async def main():
        task = asyncio.create_task(w.emit(items(3)))
        await async_wait_until(lambda: w._q.qsize() >= 1, what="the emit queued")  # the writer is parked
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    release.set()
    assert w.submit(items(1)).result(10).first_seq == 1  # the cancelled batch took no seq


def test_waiters_wake_when_the_disk_frees_up(make_writer, monkeypatch):
    free = {"bytes": 0}
    monkeypatch.setattr("edge.spool.common._disk_free", lambda _path: free["bytes"])
    w = make_writer({"min_free_bytes": 1000}, sample_interval_s=0.05)
    with pytest.raises(SpoolFull) as e:
        w.submit(items(1)).result(10)
    assert e.value.cause == "disk_low"
    assert w.wait_for_space(0.2) is False
    free["bytes"] = 10_000_000  # the operator cleaned up the disk
    assert w.wait_for_space(10) is True
    assert w.submit(items(1)).result(10).first_seq == 1


def test_waiters_under_a_drop_policy_wake_on_a_full_disk(make_writer, monkeypatch):
    """drop_oldest makes its own room: a collector told SpoolFull (the disk failed a write) must
    not wait for a free-space figure that a full disk never shows."""
    monkeypatch.setattr("edge.spool.common._disk_free", lambda _path: 0)
    w = make_writer({"when_full": "drop_oldest", "ballast_bytes": 0}, sample_interval_s=0.05)
    w.submit(items(5)).result(10)
    w._update_space(True, False)  # as after an append that failed with SpoolFull(disk_full)
    assert w.wait_for_space(10) is True
