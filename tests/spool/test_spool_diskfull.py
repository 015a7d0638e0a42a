"""A real full disk: SQLite's own SQLITE_FULL (max_page_count) and ENOSPC on a 4 MB tmpfs."""

import errno
import logging
import os
import sqlite3
import subprocess

import pytest

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


def test_drop_oldest_on_a_100pct_full_disk_keeps_going(open_spool, tiny_fs, caplog):
    """Something else fills the disk: drop_oldest keeps storing (the ballast gives the drops and
    the checkpoint room), the spool does not bleed away, and growth resumes when space returns."""
    path = tiny_fs / "spool.db"
    s = open_spool(path=path, max_bytes=64 << 20, when_full="drop_oldest", min_free_bytes=64 << 10,
                   ballast_bytes=512 << 10)
    assert (tiny_fs / "spool.db.ballast").stat().st_size == 512 << 10
    writer = SpoolWriter(s, sample_interval_s=0.05)
    try:
        k = 0
        while writer.call(lambda sp: sp.stats()).result(10)["depth_bytes"] < 1 << 20:
            writer.submit(items(100, start=100 * k, pad=300)).result(10)
            k += 1
        depth_before = writer.call(lambda sp: sp.stats()).result(10)["depth_rows"]
        fill_disk(tiny_fs / "filler")
        with caplog.at_level(logging.WARNING):
            for _ in range(300):  # every append is stored: none refused, none failing
                r = writer.submit(items(100, start=100 * k, pad=300)).result(10)
                assert r.stored
                k += 1
        st = writer.call(lambda sp: sp.stats()).result(10)
        assert st["dropped"].get("drop_oldest", 0) >= 300 * 100 and "drop_newest" not in st["dropped"]
        assert st["depth_rows"] > depth_before * 0.8  # kept its size within the file's own pages
        assert not (tiny_fs / "spool.db.ballast").exists()
        assert sum("released the spool ballast" in r.message for r in caplog.records) == 1
        (tiny_fs / "filler").unlink()  # the operator frees space
        wait_until(lambda: (tiny_fs / "spool.db.ballast").exists(), 10, "the ballast taken back")
        dropped = st["dropped_total"]
        for _ in range(20):
            writer.submit(items(100, start=100 * k, pad=300)).result(10)
            k += 1
        assert writer.call(lambda sp: sp.stats()).result(10)["dropped_total"] == dropped  # room again: no drops
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
    try:
        for k in range(30):
            writer.submit(items(100, start=100 * k, pad=300)).result(10)
        fill_disk(tiny_fs / "filler")
        fails = 0
        with caplog.at_level(logging.INFO, logger="edge.writer"):
            for k in range(30, 80):
                try:
                    writer.submit(items(100, start=100 * k, pad=300)).result(10)
                except SpoolFull as e:
                    assert e.cause in ("disk_full", "disk_low")
                    fails += 1
            wait_until(lambda: writer._health.failures >= 20, 10, "failing maintenance turns")
            assert writer._health.state == "disk_full"
            lines = [r for r in caplog.records if r.name == "edge.writer" and r.levelno >= logging.ERROR]
            assert len(lines) == 1 and "disk full" in lines[0].message and lines[0].exc_info is None
            (tiny_fs / "filler").unlink()
            wait_until(lambda: writer._health.state == "ok", 10, "recovered")
        assert fails > 0
        writer.submit(items(10, start=10**6)).result(10)
        wait_until(lambda: writer.call(lambda sp: sp.stats()).result(10)["writer_state"] == "ok", 10, "state ok")
    finally:
        writer.close()
    accounting(path)


def writer_state(path):
    with SpoolReader(path) as r:
        return r.stats()["writer_state"]


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
