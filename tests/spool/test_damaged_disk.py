"""A damaged spool on disk: every seq either stays in the spool or is covered by a loss marker.

The sidecar ``<spool>.seq`` keeps the last known delivered seq and a committed mark next to
the seq reservation, so an emptied, truncated, overwritten or missing spool, or a WAL lost
after a crash, becomes one loss marker over exactly the seqs that may be gone.
"""

import json
import logging
import shutil
from pathlib import Path

import pytest

from edge.encode import decode
from edge.spool.seqfile import DELIVERED_STEP

from .conftest import accounting, items, run_crash_child



def build(open_spool, rows=300, acked=20):
    s = open_spool()
    s.append(items(rows, pad=100))
    s.ack(acked)
    s.close()


def wipe(spool_path, suffixes=("", "-wal", "-shm")):
    for suffix in suffixes:
        spool_path.with_name(spool_path.name + suffix).unlink(missing_ok=True)


def test_clean_restart_writes_no_marker(open_spool, spool_path):
    build(open_spool)
    s = open_spool()
    assert s.alarms() == [] and accounting(spool_path)["markers"] == []
    assert s.append(items(1)).first_seq == 301


@pytest.mark.parametrize("damage", ["empty", "half", "header"])
def test_damaged_file_becomes_one_marker_from_the_last_delivered_seq(open_spool, spool_path, caplog, damage):
    build(open_spool)
    if damage == "empty":
        spool_path.write_bytes(b"")
    elif damage == "half":
        with open(spool_path, "r+b") as f:
            f.truncate(spool_path.stat().st_size // 2)
    else:
        with open(spool_path, "r+b") as f:
            f.write(b"\0" * 100)  # the 100-byte SQLite header
    with caplog.at_level(logging.CRITICAL, logger="edge.spool"):
        s = open_spool()
    assert [a["name"] for a in s.alarms()] == ["spool_corrupt"]
    assert any("SPOOL" in r.message for r in caplog.records)
    acc = accounting(spool_path)
    assert acc["markers"] == [(21, 300, "spool_corrupt")]  # delivered 20 (sidecar) .. committed mark 300
    assert acc["stats"]["delivered_seq"] == 20
    assert s.append(items(1)).first_seq == 301


def test_delivered_mark_follows_the_watermark(open_spool, spool_path):
    s = open_spool()
    s.append(items(3 * DELIVERED_STEP))
    s.ack(DELIVERED_STEP // 2)
    s.ack(2 * DELIVERED_STEP + 5)
    marks = json.loads(spool_path.with_name("spool.db.seq").read_text())
    assert DELIVERED_STEP // 2 <= marks["delivered"] <= 2 * DELIVERED_STEP + 5
    assert 2 * DELIVERED_STEP + 5 - marks["delivered"] < DELIVERED_STEP


def test_wal_lost_after_a_power_cut_is_a_marker_and_seqs_are_not_reused(open_spool, spool_path, tmp_path):
    """spool.db and its sidecar as a power cut leaves them, without the -wal that held the commits."""
    s = open_spool()
    s.append(items(10))
    s.checkpoint("TRUNCATE")  # seq 1..10 in the main file
    s.append(items(40, start=10))  # seq 11..50 only in the WAL
    crash = tmp_path / "crash"
    crash.mkdir()
    for name in ("spool.db", "spool.db.seq"):
        shutil.copy2(tmp_path / name, crash / name)
    s2 = open_spool(path=crash / "spool.db")
    acc = accounting(crash / "spool.db")
    assert sorted(acc["readings"]) == list(range(1, 11))
    (marker,) = acc["markers"]
    assert marker[0] == 11 and marker[1] >= 50 and marker[2] == "spool_lost"
    assert [a["name"] for a in s2.alarms()] == ["spool_commits_lost"]
    assert s2.append(items(1)).first_seq == marker[1] + 1 > 50  # never a seq that may have been committed


def run_child_until(path: Path, commits: int) -> list[str]:
    """Run tests/spool/crash_child.py, SIGKILL it once it reported ``commits`` commits."""
    def wait(child) -> list[str]:
        lines: list[str] = []
        while sum(line.startswith("A ") for line in lines) < commits:
            line = child.stdout.readline()
            assert line, child.stderr.read()
            lines.append(line)
        return lines

    return run_crash_child(path, 0, wait)


def reported_seqs(lines: list[str]) -> dict[int, str]:
    out = {}
    for line in lines:
        parts = line.split()
        if parts[0] == "A":
            for i, seq in enumerate(range(int(parts[1]), int(parts[2]) + 1)):
                out[seq] = f"{parts[3]}/{i}"
    return out


@pytest.mark.parametrize("lose_wal", [False, True])
def test_sigkill_then_wal_deleted(open_spool, spool_path, lose_wal):
    """kill -9: with the WAL kept nothing is lost and no marker is written; with the WAL deleted,
    every commit the child reported is still there or covered by a marker, and no seq is reused."""
    from edge.spool import Spool

    first = Spool.open(spool_path, appliance_id="crash", max_bytes=1 << 30, min_free_bytes=0)
    first.append(items(100))
    first.close()  # seq 1..100 in the main file; the child's commits go to the WAL
    reported = reported_seqs(run_child_until(spool_path, 30))
    wal = spool_path.with_name("spool.db-wal")
    assert wal.exists() and wal.stat().st_size > 0
    if lose_wal:
        wipe(spool_path, ("-wal", "-shm"))
    s = Spool.open(spool_path, appliance_id="crash", max_bytes=1 << 30, min_free_bytes=0)
    try:
        acc = accounting(spool_path)
        covered = [(a, b) for a, b, _r in acc["markers"]]
        delivered = acc["stats"]["delivered_seq"]
        for seq, expect in reported.items():
            if seq <= delivered or any(a <= seq <= b for a, b in covered):
                continue
            msg = decode(acc["readings"][seq])
            assert f"{msg.source}/{msg.point}" == expect
        assert s.append(items(1)).first_seq > max(reported)
        if lose_wal:
            assert [m[2] for m in acc["markers"]] == ["spool_lost"] and acc["markers"][0][0] >= 101
            assert [a["name"] for a in s.alarms()] == ["spool_commits_lost"]
        else:
            assert acc["markers"] == [] and s.alarms() == []
    finally:
        s.close()


def test_main_file_deleted_with_its_wal_left_behind(open_spool, spool_path, tmp_path):
    """Only spool.db is gone; its -wal (frames of a file that no longer exists) must not be
    replayed into the fresh spool: it is moved aside with the evidence."""
    s = open_spool()
    s.append(items(10))
    s.checkpoint("TRUNCATE")
    s.append(items(20, start=10))
    crash = tmp_path / "crash"
    crash.mkdir()
    for name in ("spool.db-wal", "spool.db.seq"):
        shutil.copy2(tmp_path / name, crash / name)
    s2 = open_spool(path=crash / "spool.db")
    acc = accounting(crash / "spool.db")
    assert acc["readings"] == {} and [m[2] for m in acc["markers"]] == ["spool_corrupt"]
    assert acc["markers"][0][1] >= 30 and s2.append(items(1)).first_seq > 30
    assert any(p.name.endswith("-wal") and ".corrupt-" in p.name for p in crash.iterdir())
