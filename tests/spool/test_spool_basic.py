"""Append / peek / ack on a real spool file: order, contiguity, watermark, seq never reused."""

import shutil
import sqlite3
import time

import pytest

from edge.budget import ROW_OVERHEAD
from edge.spool import QUARANTINE_RAW_MAX, SCHEMA_VERSION, BadRequest, Spool, SpoolError, SpoolReader

from .conftest import BASE_TS, accounting, body, items


def test_seqs_contiguous_and_in_order(open_spool, spool_path):
    s = open_spool()
    r1 = s.append(items(3))
    r2 = s.append(items(1000, start=3))
    r3 = s.append(items(1, start=1003))
    assert (r1.first_seq, r1.last_seq) == (1, 3)
    assert (r2.first_seq, r2.last_seq) == (4, 1003)
    assert (r3.first_seq, r3.last_seq) == (1004, 1004)
    rows = s.peek(0, 5000)
    assert [seq for seq, _ in rows] == list(range(1, 1005))
    assert [b for _, b in rows] == [b for _, b in items(1004)]
    assert accounting(spool_path)["stats"]["next_seq"] == 1005


def test_one_transaction_of_several_batches_across_statement_sizes(open_spool):
    # Rows go in as multi-row INSERTs of INSERT_ROWS rows plus one for the remainder; batches of
    # one transaction are joined first. Every size boundary must keep seq = position and ts/body.
    from edge.spool import INSERT_ROWS

    s = open_spool()
    sizes = [1, INSERT_ROWS - 1, 2 * INSERT_ROWS + 37, INSERT_ROWS]
    with s.transaction():
        start = 0
        for n in sizes:
            r = s.append(items(n, start=start))
            assert (r.first_seq, r.last_seq) == (start + 1, start + n)
            start += n
    rows = s.peek(0, 10**6)
    assert [seq for seq, _ in rows] == list(range(1, start + 1))
    assert [b for _, b in rows] == [b for _, b in items(start)]
    ts = sqlite3.connect(s.path).execute("SELECT ts FROM readings ORDER BY seq").fetchall()
    assert [t for (t,) in ts] == [t for t, _ in items(start)]


def test_peek_limits(open_spool):
    s = open_spool()
    s.append(items(10))
    assert [q for q, _ in s.peek(3, 4)] == [4, 5, 6, 7]
    one = len(body(0))
    assert len(s.peek(0, 10, max_bytes=one * 3)) == 3
    assert len(s.peek(0, 10, max_bytes=1)) == 1  # a big row never wedges the drain
    assert s.peek(10, 10) == []


def test_ack_deletes_by_range_and_is_idempotent(open_spool, spool_path):
    s = open_spool()
    s.append(items(100))
    assert s.ack(40) == 40
    assert s.ack(40) == 40
    assert s.ack(10) == 40  # going backwards is ignored
    assert s.peek(0, 1)[0][0] == 41
    st = s.stats()
    assert (st["delivered_seq"], st["depth_rows"], st["delivered_total"]) == (40, 60, 40)
    assert st["depth_bytes"] == sum(len(b) + 32 for _, b in items(100)[40:])
    with pytest.raises(BadRequest):
        s.ack(101)
    accounting(spool_path)


def test_seq_never_reused_after_everything_delivered_and_reopen(open_spool):
    s = open_spool()
    s.append(items(50))
    s.ack(50)
    s.close()
    s = open_spool()
    assert s.stats()["depth_rows"] == 0
    assert s.append(items(2)).first_seq == 51


def test_bad_items_fail_clearly_and_store_nothing(open_spool):
    s = open_spool()
    s.append(items(2))
    for bad in ([(BASE_TS, "text not bytes")], [(BASE_TS, b"ok"), ("ts", b"x")], [(1, 2, 3)], [b"x"], []):
        with pytest.raises(BadRequest):
            s.append(bad)
    assert s.next_seq == 3 and s.stats()["depth_rows"] == 2
    assert s.append(items(1)).first_seq == 3


def test_other_appliance_refused(open_spool):
    open_spool().close()
    with pytest.raises(BadRequest, match="belongs to appliance"):
        open_spool(appliance_id="someone-else")


def test_pragmas_and_schema(open_spool, spool_path):
    s = open_spool()
    s.append(items(1))
    conn = sqlite3.connect(spool_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()
    assert s._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_reader_is_read_only(open_spool, spool_path):
    s = open_spool()
    s.append(items(5))
    with SpoolReader(spool_path) as r:
        assert [q for q, _ in r.peek(0, 10)] == [1, 2, 3, 4, 5]
        assert r.watermark() == 0
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            r._conn.execute("DELETE FROM readings")


def test_states_quarantine_bounded(open_spool, spool_path):
    s = open_spool()
    s.put_state("forwarder", "main", {"status": "ok", "sent_hi": 5})
    s.put_state("forwarder", "main", {"status": "blocked"})
    big = b"\x00" * (QUARANTINE_RAW_MAX + 200 * 1024)
    s.quarantine("mqtt-1", "not json", big, {"topic": "a/b"})
    s.quarantine("mqtt-1", "too short", "text", None)
    with SpoolReader(spool_path) as r:
        assert [x["value"] for x in r.states("forwarder")] == [{"status": "blocked"}]
        q = r.quarantined(10)
        assert r.stats()["quarantined"] == 2
    assert q[1]["raw_len"] == len(big) and len(q[1]["raw"]) == QUARANTINE_RAW_MAX
    assert q[1]["meta"] == {"topic": "a/b", "truncated": True, "kept_bytes": QUARANTINE_RAW_MAX}
    assert q[0]["raw"] == b"text" and q[0]["meta"] is None


def test_quarantine_truncated_flag_agrees_with_what_is_stored(open_spool):
    """A source configured to keep 128 KiB (mqtt quarantine_max_bytes) gets 128 KiB stored, and
    ``truncated`` is true exactly when fewer bytes were stored than the payload had."""
    s = open_spool()
    payload = bytes(range(256)) * 512  # 128 KiB, all kept by the source
    s.quarantine("mqtt-1", "not json", payload, {"bytes": len(payload), "truncated": False})
    (q,) = s.quarantined(1)
    assert q["raw"] == payload and q["meta"]["truncated"] is False
    small = open_spool(path=s.path.with_name("small.db"), max_bytes=512 * 1024, side_max_bytes=100_000)
    small.quarantine("mqtt-1", "not json", payload, {"bytes": len(payload), "truncated": False})
    (q,) = small.quarantined(1)
    assert len(q["raw"]) < len(payload) and q["raw"] == payload[:len(q["raw"])]
    assert q["meta"]["truncated"] is True and q["meta"]["kept_bytes"] == len(q["raw"])


def test_quarantine_and_dead_letters_count_in_the_budget(open_spool, spool_path):
    """600 bad bodies of 60 KB on a 1 MiB budget: the side tables stay under their cap (oldest
    quarantine rows go, counted), the file stays near the budget, readings are never dropped for them."""
    s = open_spool(max_bytes=1 << 20, when_full="drop_oldest")
    s.append(items(50))
    on_disk = 0  # the most the spool's files (database and WAL) held at any point
    for i in range(600):
        s.quarantine("http", "bad body", bytes([i % 256]) * 60_000, None)
        on_disk = max(on_disk, sum(spool_path.with_name(spool_path.name + x).stat().st_size for x in ("", "-wal")))
    assert on_disk < 2 * (1 << 20)  # 36 MB of bodies went through; the disk never held more than ~the budget
    st = s.stats()
    assert st["side_bytes"] <= st["side_budget_bytes"] < 1 << 20
    assert st["side_dropped"]["quarantine"] >= 590 and st["quarantined"] == 600
    assert st["dropped_total"] == 0 and st["depth_rows"] == 50  # no reading made way for them
    s.checkpoint("TRUNCATE")
    assert spool_path.stat().st_size < 2 * (1 << 20)
    # what the side tables hold is taken from the readings' share of the budget
    with SpoolReader(spool_path) as r:
        kept = sum(len(q["raw"]) + 32 for q in r.quarantined(1000))
    assert kept == st["side_bytes"]
    assert s._readings_budget() == (1 << 20) - st["side_bytes"]


def test_dead_letters_count_in_the_budget_and_go_after_quarantine(open_spool, spool_path):
    """Dead letters share the side cap: quarantine rows are pushed out before any dead letter, then
    the oldest dead letters go (counted); their seq slots stay loss markers; readings are untouched."""
    s = open_spool(max_bytes=1 << 20, when_full="drop_oldest", side_max_bytes=256 * 1024)
    s.append([(1_700_000_000_000_000 + i, body(i, pad=60_000)) for i in range(12)])  # seq 1..12, ~60 KB each
    s.append(items(30, start=100))  # seq 13..42, small
    for i in range(3):
        s.quarantine("http", "bad body", b"q" * 60_000, None)
    for seq in (1, 2, 3):  # three rejected records: 180 KB, the quarantine must make way
        s.dead_letter(seq, "rejected")
    st = s.stats()
    assert st["side_bytes"] <= st["side_budget_bytes"] == 256 * 1024
    assert st["side_dropped"] == {"quarantine": 2}
    assert len(s.quarantined(10)) == 1 and [d["seq"] for d in s.dead_letters(10)] == [3, 2, 1]
    for seq in range(4, 9):  # more than the cap holds: the quarantine empties, then the oldest dead letters go
        s.dead_letter(seq, "rejected")
    st = s.stats()
    assert st["side_bytes"] <= st["side_budget_bytes"]
    assert st["side_dropped"]["quarantine"] == 3 and st["side_dropped"]["dead_letters"] == 4
    assert s.quarantined(10) == [] and [d["seq"] for d in s.dead_letters(10)] == [8, 7, 6, 5]
    assert st["dropped_total"] == 0 and st["dead_lettered"] == 8
    acc = accounting(spool_path)  # every seq still a reading or a marker
    assert [m for m in acc["markers"] if m[2] == "dead_letter"] == [(q, q, "dead_letter") for q in range(1, 9)]
    assert sorted(acc["readings"]) == list(range(9, 43))
    with SpoolReader(spool_path) as r:
        kept = sum(len(d["body"]) + ROW_OVERHEAD for d in r.dead_letters(100))
    assert kept == st["side_bytes"]


def test_quarantine_keeps_only_the_newest(open_spool, monkeypatch):
    monkeypatch.setattr("edge.spool.sidetables.QUARANTINE_KEEP", 5)
    s = open_spool()
    for i in range(12):
        s.quarantine("src", f"r{i}", b"x")
    got = s.quarantined(100)
    assert [q["reason"] for q in got] == [f"r{i}" for i in range(11, 6, -1)]
    assert s.stats()["quarantined"] == 12


def test_reopen_from_files_copied_mid_run_keeps_committed_rows(open_spool, spool_path, tmp_path):
    """A power cut leaves spool.db + spool.db-wal as they are while the writer runs: copy them then."""
    s = open_spool()
    s.append(items(10))
    assert (tmp_path / "spool.db-wal").stat().st_size > 0
    crash = tmp_path / "crash"
    crash.mkdir()
    for name in ("spool.db", "spool.db-wal", "spool.db.seq"):
        shutil.copy2(tmp_path / name, crash / name)
    s2 = open_spool(path=crash / "spool.db")
    assert [q for q, _ in s2.peek(0, 100)] == list(range(1, 11))
    assert s2.append(items(1)).first_seq == 11
    assert s2.alarms() == []


def test_stats_rates_from_samples(open_spool):
    s = open_spool(max_bytes=10_000_000)
    t = time.time()
    s.sample(now=t - 100)
    s.append(items(100))
    s.sample(now=t - 50)
    s.ack(50)
    st = s.stats()
    assert st["ingest_rate_5m"] == pytest.approx(1.0, rel=0.05)  # 100 readings over 100 s
    assert st["drain_rate_10s"] == pytest.approx(1.0, rel=0.05)  # 50 over the 50 s since the newest sample
    assert st["ingest_rate_10s"] == 0.0
    assert st["drain_eta_s"] == pytest.approx(50.0, rel=0.05)  # 50 left at a net 1/s
    assert st["runway_s"] is None  # not filling
    assert [x["appended_total"] for x in s.samples(0)] == [0, 100]
    assert st["oldest_age_s"] > 0 and st["budget_used_pct"] > 0
    assert st["schema_version"] == SCHEMA_VERSION


def test_invalid_settings():
    with pytest.raises(BadRequest):
        Spool.open("/tmp/never.db", appliance_id="a", max_bytes=10, when_full="explode")


def test_one_writer_per_spool(open_spool, spool_path):
    s = open_spool()
    with pytest.raises(SpoolError, match="already open for writing"):
        Spool.open(spool_path, appliance_id="app-1", max_bytes=1 << 20)
    s.append(items(1))  # the first writer is unaffected
    s.close()
    open_spool().append(items(1))  # released on close


def test_mqtt_quarantine_max_bytes_is_bounded_by_what_the_spool_stores():
    """The config's maximum is the spool's: a value the spool would cut is refused at check time."""
    from edge.config import parse
    from edge.configtypes import ConfigError

    def cfg(size):
        return parse({"appliance_id": "a", "zerobus": {"endpoint": "http://127.0.0.1:50051", "workspace_url":
                      "http://127.0.0.1:8090", "table": "c.s.t", "client_id": "x", "client_secret": "y"},
                      "sources": [{"name": "m", "type": "mqtt", "subscriptions": [{"topic": "a/#"}],
                                   "quarantine_max_bytes": size}]})

    assert int(cfg("1MiB").sources[0].quarantine_max_bytes) == QUARANTINE_RAW_MAX
    with pytest.raises(ConfigError, match="quarantine_max_bytes"):
        cfg("2MiB")


def test_side_cap_and_ballast_come_from_the_config(tmp_path):
    from edge.config import parse
    from edge.configtypes import ConfigError
    from edge.runner import open_spool

    base = {"appliance_id": "a", "zerobus": {"client_secret": "y"}, "sources": [{"name": "d", "type": "synthetic"}]}
    cfg = parse({**base, "spool": {"path": str(tmp_path / "s.db"), "max_bytes": "64MiB", "min_free_bytes": 0,
                                   "side_max_bytes": "2MiB", "ballast_bytes": 0}})
    s = open_spool(cfg)
    try:
        assert s.stats()["side_budget_bytes"] == 2 << 20 and not (tmp_path / "s.db.ballast").exists()
    finally:
        s.close()
    with pytest.raises(ConfigError, match="side_max_bytes"):
        parse({**base, "spool": {"max_bytes": "64MiB", "side_max_bytes": "64MiB"}})
