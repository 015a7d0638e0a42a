"""A real full disk: SQLite's own SQLITE_FULL (max_page_count) and ENOSPC on a 4 MB tmpfs."""

import errno
import logging
import os
import sqlite3
import subprocess
import time

import pytest

from edge.admin import model, reading
from edge.sources.states import State
from edge.sources.status import SourceStatus
from edge.spool import SpoolFull, SpoolReader
from edge.writer import SpoolWriter
from simulators.kit.mqtt import wait_until

from .conftest import accounting, items


def assert_sound(path):
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    conn.close()


def test_sqlite_full_rolls_back_and_recovers(open_spool, spool_path):
    s = open_spool()
    s.append(items(10))
    pages = s._conn.execute("PRAGMA page_count").fetchone()[0]
    s._conn.execute(f"PRAGMA max_page_count = {pages + 3}")
    stored = 10
    with pytest.raises(SpoolFull) as e:
        for k in range(100):
            s.append(items(200, start=1000 * k, pad=200))
            stored += 200
    assert e.value.cause == "disk_full"
    acc = accounting(spool_path)
    assert acc["stats"]["next_seq"] == stored + 1 and len(acc["readings"]) == stored  # nothing partial
    with pytest.raises(SpoolFull):  # still full: fails again, no crash, no wedge
        s.append(items(200, pad=200))
    s._conn.execute("PRAGMA max_page_count = 1000000")  # space returns
    r = s.append(items(200, pad=200))
    assert r.first_seq == stored + 1
    accounting(spool_path)
    assert_sound(spool_path)


@pytest.fixture
def tiny_fs(tmp_path):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; test_sqlite_full_rolls_back_and_recovers covers SQLITE_FULL")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], check=True, timeout=10)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False, timeout=10)


def fill_disk(path):
    """Another writer takes every free block of the filesystem (100% full)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as e:
        assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)
    assert os.statvfs(path.parent).f_bavail == 0


def test_enospc_on_a_real_small_filesystem(open_spool, tiny_fs, monkeypatch):
    path = tiny_fs / "spool.db"
    filler = tiny_fs / "filler"
    filler.write_bytes(b"\0" * (2 * 1024 * 1024))
    s = open_spool(path=path, min_free_bytes=0)
    stored = 0

    def fill_until_full():
        nonlocal stored
        with pytest.raises(SpoolFull) as e:
            for k in range(1000):
                s.append(items(100, start=100 * k, pad=300))
                stored += 100
        return e.value.cause

    # The free-space check sees it coming first...
    assert fill_until_full() == "disk_low"
    # ...and when it cannot (statvfs lies or is unavailable) the real ENOSPC is survived too.
    monkeypatch.setattr("edge.spool.common._disk_free", lambda _path: None)
    assert fill_until_full() == "disk_full"
    assert stored > 0
    with SpoolReader(path) as r:
        assert r.stats()["next_seq"] == stored + 1
    filler.unlink()  # the operator frees space
    r = s.append(items(100, pad=300))
    assert r.first_seq == stored + 1
    for upto in range(500, stored + 1, 500):  # the forwarder acks batch by batch
        s.ack(upto)
    s.ack(stored)
    acc = accounting(path)
    assert sorted(acc["readings"]) == list(range(stored + 1, stored + 101))
    assert_sound(path)


def page_sources(path) -> dict[str, dict]:
    """The source rows as the admin page and /api/sources show them (edge/admin: reading.read, model.sources)."""
    snap = reading.read(str(path))
    assert snap.error is None, snap.error
    return {row["name"]: row for row in model.sources(snap.states.get("source") or {}, time.time())}


def running_source(writer) -> SourceStatus:
    """A source's status as a collector keeps it: stored through the writer, flushed on every change."""
    status = SourceStatus("line1", "synthetic", writer.put_state, min_interval=0.0)
    status.set_state(State.RUNNING, "100 readings/s")
    return status


def test_drop_oldest_on_a_100pct_full_disk_keeps_going(open_spool, tiny_fs, caplog, monkeypatch):
    """Something else fills the disk: drop_oldest keeps storing (the ballast gives the drops and
    the checkpoint room), the spool does not bleed away, the writer and the source say disk_full
    (not running) on the page, the log has one line for it, not one per append, and growth
    resumes when space returns."""
    monkeypatch.setattr("edge.spool.health.RECOVER_S", 0.2)
    path = tiny_fs / "spool.db"
    s = open_spool(path=path, max_bytes=64 << 20, when_full="drop_oldest", min_free_bytes=64 << 10,
                   ballast_bytes=512 << 10)
    assert (tiny_fs / "spool.db.ballast").stat().st_size == 512 << 10
    writer = SpoolWriter(s, sample_interval_s=0.05)
    status = running_source(writer)
    try:
        k = 0
        while writer.call(lambda sp: sp.stats()).result(10)["depth_bytes"] < 1 << 20:
            writer.submit(items(100, start=100 * k, pad=300)).result(10)
            k += 1
        depth_before = writer.call(lambda sp: sp.stats()).result(10)["depth_rows"]
        wait_until(lambda: page_sources(path).get("line1", {}).get("state") == "running", 10, "the source row")
        fill_disk(tiny_fs / "filler")
        with caplog.at_level(logging.INFO):
            for _ in range(300):  # every append is stored: none refused, none failing
                r = writer.submit(items(100, start=100 * k, pad=300)).result(10)
                assert r.stored
                status.readings(100)  # what a collector does after each commit: its own state stays running
                k += 1
            wait_until(lambda: writer_state(path) == "disk_full", 10, "the writer's state stored")
            row = page_sources(path)["line1"]
            assert row["state"] == "disk_full" and row["severity"] == "bad", row
            assert "drop" in row["detail"] and "reports running" in row["detail"]
        st = writer.call(lambda sp: sp.stats()).result(10)
        assert st["dropped"].get("drop_oldest", 0) >= 300 * 100 and "drop_newest" not in st["dropped"]
        assert st["depth_rows"] > depth_before * 0.8  # kept its size within the file's own pages
        assert not (tiny_fs / "spool.db.ballast").exists()
        assert sum("released the spool ballast" in r.message for r in caplog.records) == 1
        # 300 appends that each dropped: one drop line, one writer line, no traceback
        assert sum("drop_oldest: dropped" in r.message for r in caplog.records) <= 2
        assert sum(r.name == "edge.writer" and r.levelno >= logging.ERROR for r in caplog.records) == 1
        assert not any(r.exc_info for r in caplog.records)
        assert len(caplog.records) < 20, [r.message for r in caplog.records]
        (tiny_fs / "filler").unlink()  # the operator frees space
        t0 = time.monotonic()
        dropped = st["dropped_total"]
        r = writer.submit(items(100, start=100 * k, pad=300)).result(10)
        k += 1
        assert r.dropped == 0 and time.monotonic() - t0 < 2  # progress at once: the next append needs no drop
        wait_until(lambda: (tiny_fs / "spool.db.ballast").exists(), 10, "the ballast taken back")
        for _ in range(20):
            writer.submit(items(100, start=100 * k, pad=300)).result(10)
            k += 1
        assert writer.call(lambda sp: sp.stats()).result(10)["dropped_total"] == dropped  # room again: no drops
        status.readings(1)
        wait_until(lambda: page_sources(path)["line1"]["state"] == "running", 10, "the source running again")
        assert writer_state(path) == "ok"
    finally:
        writer.close()
    acc = accounting(path)
    assert acc["stats"]["next_seq"] == 100 * k + 1
    assert_sound(path)


def test_a_wedged_disk_is_one_state_line_not_a_traceback_per_turn(open_spool, tiny_fs, caplog, monkeypatch):
    """No ballast and a full disk: writes keep failing. The writer logs it once, its state says
    disk_full (stored once a write can succeed again), and it recovers when space returns."""
    monkeypatch.setattr("edge.spool.health.RECOVER_S", 0.2)
    path = tiny_fs / "spool.db"
    s = open_spool(path=path, max_bytes=64 << 20, when_full="drop_oldest", min_free_bytes=0, ballast_bytes=0)
    writer = SpoolWriter(s, sample_interval_s=0.02)
    running_source(writer)
    try:
        for k in range(30):
            writer.submit(items(100, start=100 * k, pad=300)).result(10)
        wait_until(lambda: page_sources(path).get("line1", {}).get("state") == "running", 10, "the source row")
        fill_disk(tiny_fs / "filler")
        fails = 0
        with caplog.at_level(logging.INFO):
            for k in range(30, 80):
                try:
                    writer.submit(items(100, start=100 * k, pad=300)).result(10)
                except SpoolFull as e:
                    assert e.cause in ("disk_full", "disk_low")
                    fails += 1
            wait_until(lambda: writer._health.failures >= 20, 10, "failing maintenance turns")
            assert writer._health.state == "disk_full"
            # Nothing can be written, not even the state line: readers judge the disk themselves.
            assert writer_state(path) == "disk_full"
            row = page_sources(path)["line1"]
            assert row["state"] == "disk_full" and "reports running" in row["detail"]
            lines = [r for r in caplog.records if r.name == "edge.writer" and r.levelno >= logging.ERROR]
            assert len(lines) == 1 and "disk full" in lines[0].message and lines[0].exc_info is None
            # 20+ failing turns and 50 refused appends: a handful of lines in all, none with a traceback
            assert not any(r.exc_info for r in caplog.records)
            assert len(caplog.records) < 15, [r.getMessage() for r in caplog.records]
            (tiny_fs / "filler").unlink()
            wait_until(lambda: writer._health.state == "ok", 10, "recovered")
        assert fails > 0
        writer.submit(items(10, start=10**6)).result(10)
        wait_until(lambda: writer.call(lambda sp: sp.stats()).result(10)["writer_state"] == "ok", 10, "state ok")
        assert page_sources(path)["line1"]["state"] == "running"
    finally:
        writer.close()
    accounting(path)


def writer_state(path):
    with SpoolReader(path) as r:
        return r.stats()["writer_state"]


def test_the_collecting_states_the_page_overrides_are_source_states():
    from edge.spool.stats import COLLECTING_STATES

    assert COLLECTING_STATES <= {st.value for st in State}
    assert {State.RUNNING, State.CONNECTED, State.LISTENING} <= COLLECTING_STATES
    # states that name the source's own fault, or a stop, stay as the source reported them
    assert not COLLECTING_STATES & {State.AUTH_FAILED, State.CONNECT_FAILED, State.STOPPED, State.BLOCKED}


def test_maintenance_errors_become_a_state_line(open_spool, spool_path, caplog, monkeypatch):
    monkeypatch.setattr("edge.spool.health.RECOVER_S", 0.2)
    s = open_spool()
    broken = {"on": True}
    real_sample = s.sample

    def sample(now=None):
        if broken["on"]:
            raise RuntimeError("stats table unavailable")
        real_sample(now)

    s.sample = sample
    writer = SpoolWriter(s, sample_interval_s=0.01)
    try:
        with caplog.at_level(logging.INFO, logger="edge.writer"):
            wait_until(lambda: writer._health.failures >= 30, 10, "repeated failures")
            wait_until(lambda: writer_state(spool_path) == "error", 10, "state stored")
            with SpoolReader(spool_path) as r:
                (state,) = r.states("spool")
                assert r.stats()["writer_state"] == "error"
            assert state["value"]["state"] == "error" and "stats table unavailable" in state["value"]["error"]
            errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
            assert len(errors) == 1 and errors[0].exc_info  # the first one with its traceback, then quiet
            broken["on"] = False
            wait_until(lambda: writer_state(spool_path) == "ok", 10, "recovered")
        assert any("recovered" in r.message for r in caplog.records)
    finally:
        writer.close()


def test_seq_sidecar_moves_on_a_full_disk(tiny_fs):
    """No block left for a temp file: the reservation is rewritten in place, so crossing the
    committed mark does not fail every append once the disk is full."""
    from edge.spool.seqfile import SeqReservation

    seq = SeqReservation(tiny_fs / "spool.db")
    seq.ensure_above(1)
    fill_disk(tiny_fs / "filler")
    before = seq.committed
    seq.ensure_above(before + 5)
    again = SeqReservation(tiny_fs / "spool.db")
    assert (again.value, again.committed) == (seq.value, seq.committed) and again.committed >= before + 4
    assert not [p for p in tiny_fs.iterdir() if p.name.endswith(".tmp")]
