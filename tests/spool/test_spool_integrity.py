"""Corrupt, truncated, damaged and missing spool files; schema migrations."""

import json
import os
import sqlite3

import pytest

from edge.spool import SCHEMA_VERSION, SEQ_BLOCK, Spool, SpoolError, migrate

from .conftest import accounting, items

PAGE = 4096


def build(open_spool, rows=300, acked=20):
    s = open_spool()
    s.append(items(rows, pad=100))
    s.ack(acked)
    s.close()


def evidence(tmp_path):
    return sorted(p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name and not p.name.endswith(("-wal", "-shm")))


def test_garbage_file_moved_aside_and_seq_not_reused(open_spool, spool_path, tmp_path):
    build(open_spool)
    garbage = os.urandom(3 * PAGE)
    spool_path.write_bytes(garbage)
    s = open_spool()
    moved = evidence(tmp_path)
    assert len(moved) == 1 and (tmp_path / moved[0]).read_bytes() == garbage  # evidence kept as is
    (alarm,) = s.alarms()
    assert alarm["name"] == "spool_corrupt" and "not a database" in alarm["value"]["message"]
    r = s.append(items(1))
    assert r.first_seq == 301  # above the sidecar's committed mark (exact after a clean close): never reused
    # the sidecar's delivered mark (20): one marker accounts for every seq the file may have held undelivered
    assert accounting(spool_path)["markers"] == [(21, 300, "spool_corrupt")]


def test_truncated_file(open_spool, spool_path, tmp_path):
    build(open_spool)
    size = spool_path.stat().st_size
    with open(spool_path, "r+b") as f:
        f.truncate(size // 2 + 100)
    s = open_spool()
    assert len(evidence(tmp_path)) == 1
    assert [a["name"] for a in s.alarms()] == ["spool_corrupt"]
    acc = accounting(spool_path)
    assert acc["stats"]["next_seq"] == 301
    # Nothing can be salvaged from this one (SQLite reports every query malformed): the watermark
    # comes from the sidecar, and one marker covers every seq that may be gone.
    assert acc["markers"] == [(21, 300, "spool_corrupt")]
    assert "loss marker covers seq 21..300" in s.alarms()[0]["value"]["message"]


def damage_middle_page(path):
    pages = path.stat().st_size // PAGE
    with open(path, "r+b") as f:
        f.seek((pages // 2) * PAGE)
        f.write(b"\xde\xad\xbe\xef" * (PAGE // 4))
    return pages


def test_damaged_page_found_by_full_check(open_spool, spool_path, tmp_path):
    build(open_spool)
    damage_middle_page(spool_path)
    s = open_spool()
    assert len(evidence(tmp_path)) == 1
    assert s.alarms()[0]["name"] == "spool_corrupt"
    assert s.append(items(1)).first_seq == 301
    acc = accounting(spool_path)
    # The counters were salvaged (watermark 20): one marker accounts for every undelivered seq.
    assert acc["markers"] == [(21, 300, "spool_corrupt")]
    assert acc["stats"]["dropped"] == {"spool_corrupt": 280}


def test_big_spool_checked_in_background_then_moved_on_next_start(open_spool, spool_path, tmp_path):
    build(open_spool)
    damage_middle_page(spool_path)
    s = open_spool(full_check_max_bytes=0)  # as if the file were multi-GB: only a light check at open
    assert evidence(tmp_path) == [] and s.alarms() == []
    s.wait_background_check(timeout=30)
    assert [a["name"] for a in s.alarms()] == ["integrity_check_failed"]
    assert s.states("integrity")[0]["value"]["result"] != "ok"
    s.close()
    s = open_spool(full_check_max_bytes=0)
    assert len(evidence(tmp_path)) == 1
    assert [a["name"] for a in s.alarms()] == ["spool_corrupt"]


def test_healthy_big_spool_background_check_records_ok(open_spool):
    build(open_spool)
    s = open_spool(full_check_max_bytes=0)
    s.wait_background_check(timeout=30)
    assert s.states("integrity")[0]["value"]["result"] == "ok" and s.alarms() == []


def test_missing_file_with_reservation_starts_after_it(open_spool, spool_path):
    build(open_spool)
    for suffix in ("", "-wal", "-shm"):
        p = spool_path.with_name(spool_path.name + suffix)
        if p.exists():
            p.unlink()
    s = open_spool()
    assert s.append(items(1)).first_seq == 301
    assert [a["name"] for a in s.alarms()] == ["spool_corrupt"]
    assert accounting(spool_path)["markers"] == [(21, 300, "spool_corrupt")]


def test_old_sidecar_format_still_reserves(open_spool, spool_path):
    """A bare integer (the sidecar before the committed and delivered marks) still means: start above it."""
    build(open_spool)
    for suffix in ("", "-wal", "-shm"):
        spool_path.with_name(spool_path.name + suffix).unlink(missing_ok=True)
    spool_path.with_name("spool.db.seq").write_text(f"{SEQ_BLOCK + 1}\n")
    s = open_spool()
    assert s.append(items(1)).first_seq == 1 + SEQ_BLOCK
    assert "watermark unknown" in s.alarms()[0]["value"]["message"]


def test_reservation_crossed_is_fsynced_before_commit(open_spool, spool_path, monkeypatch):
    monkeypatch.setattr("edge.spool.seqfile.SEQ_BLOCK", 100)
    s = open_spool()
    sidecar = spool_path.with_name("spool.db.seq")
    assert json.loads(sidecar.read_text())["reserved"] == 101
    s.append(items(250))
    marks = json.loads(sidecar.read_text())
    assert marks["reserved"] > 251 and 250 <= marks["committed"] < marks["reserved"]


def make_v1(path, rows):
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    assert migrate(conn, upto=1) == 1
    conn.execute("INSERT INTO meta(id, appliance_id, next_seq, delivered_seq, stored_rows, stored_bytes, "
                 "appended_total, delivered_total) VALUES (1, 'app-1', ?, 5, ?, ?, ?, 5)",
                 (len(rows) + 6, len(rows), sum(len(b) + 32 for _, b in rows), len(rows) + 5))
    conn.executemany("INSERT INTO readings(seq, ts, body) VALUES (?, ?, ?)",
                     [(6 + i, ts, b) for i, (ts, b) in enumerate(rows)])
    conn.execute("INSERT INTO quarantine(source, reason, raw, raw_len) VALUES ('s', 'bad', ?, 1000)", (b"x" * 1000,))
    conn.close()


def test_migrates_older_schema_and_keeps_the_spool(open_spool, spool_path):
    old_rows = items(20)
    make_v1(spool_path, old_rows)
    s = open_spool()
    assert s.stats()["schema_version"] == SCHEMA_VERSION == 4
    assert s.stats()["side_bytes"] == 1000 + 32  # v4 counted the quarantine already there
    assert s.peek(5, 100) == [(6 + i, b) for i, (_, b) in enumerate(old_rows)]
    assert s.append(items(1)).first_seq == 26
    s.put_state("forwarder", "main", {"ok": True})  # a v2 table
    assert s.dead_letters(1) == []  # v3 columns queried without error
    acc = accounting(spool_path)
    assert acc["stats"]["appended_total"] == 26 and acc["stats"]["delivered_seq"] == 5


def test_newer_schema_refused_untouched(spool_path):
    conn = sqlite3.connect(spool_path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    before = spool_path.read_bytes()
    with pytest.raises(SpoolError, match="newer"):
        Spool.open(spool_path, appliance_id="app-1", max_bytes=1 << 20)
    assert spool_path.read_bytes() == before


def test_a_new_spool_appears_whole_to_readers(spool_path, monkeypatch):
    """Schema and meta row of a new file commit together: a reader (the admin page, a test helper
    polling for the file) never finds tables without the meta row or a schema half migrated."""
    from edge.spool import SpoolReader, core

    seen = []
    real = core.apply_migrations

    def spy(conn, version, upto=SCHEMA_VERSION):
        real(conn, version, upto)
        ro = sqlite3.connect(f"file:{spool_path}?mode=ro", uri=True)
        seen.append(ro.execute("PRAGMA user_version").fetchone()[0])  # what another process sees now
        ro.close()

    monkeypatch.setattr(core, "apply_migrations", spy)
    Spool.open(spool_path, appliance_id="app-1", max_bytes=1 << 20, min_free_bytes=0).close()
    assert seen == [0]
    with SpoolReader(spool_path) as r:
        assert r.stats()["schema_version"] == SCHEMA_VERSION and r.stats()["next_seq"] == 1
