"""A real full disk: SQLite's own SQLITE_FULL (max_page_count) and ENOSPC on a 4 MB tmpfs."""

import os
import sqlite3
import subprocess

import pytest

from edge.spool import SpoolFull, SpoolReader

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
