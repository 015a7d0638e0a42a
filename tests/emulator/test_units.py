"""Pure parts of the emulator: DDL parsing, descriptor check, interval sets, stats arithmetic, tokens, faults."""

from __future__ import annotations

import json

import pytest
from google.protobuf import descriptor_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.pb.reading_pb2 import Reading
from simulators.zerobus.faults import FaultError, Faults
from simulators.zerobus.intervals import IntervalSet
from simulators.zerobus.ledger import Ledger
from simulators.zerobus.records import JsonCodec, ProtoCodec, RecordRejected
from simulators.zerobus.schema import SchemaError, compare_descriptor, load_ddl, parse_ddl
from simulators.zerobus.tokens import TokenInvalid, TokenIssuer, TokenRequestError, check_token_form
from tests.emulator.sdk_helpers import marker, readings

F = descriptor_pb2.FieldDescriptorProto


def reading_descriptor() -> descriptor_pb2.DescriptorProto:
    d = descriptor_pb2.DescriptorProto()
    Reading.DESCRIPTOR.CopyToProto(d)
    return d


@pytest.fixture(scope="module")
def columns():
    return load_ddl("proto/readings.sql")


def test_readings_ddl_parses_to_the_reading_schema(columns):
    assert [c.name for c in columns] == [f.name for f in Reading.DESCRIPTOR.fields]
    by = {c.name: c for c in columns}
    assert by["seq"].not_null and by["seq"].proto_type == F.TYPE_INT64
    assert by["value_json"].delta_type == "VARIANT" and by["value_json"].proto_type == F.TYPE_STRING
    assert by["source_ts"].proto_type == F.TYPE_INT64 and not by["source_ts"].not_null
    assert by["value_bool"].proto_type == F.TYPE_BOOL
    assert compare_descriptor(columns, reading_descriptor()) == []


def test_ddl_types_arrays_comments_and_errors():
    cols = parse_ddl(
        "-- c\nCREATE TABLE {table} (a INT NOT NULL COMMENT 'x, y', b ARRAY<STRING>, c DATE, d FLOAT, e BINARY)"
    )
    assert [(c.name, c.expected_field()) for c in cols] == [
        ("a", "required int32"), ("b", "repeated string"), ("c", "optional int32"),
        ("d", "optional float"), ("e", "optional bytes"),
    ]
    with pytest.raises(SchemaError, match="MAP"):
        parse_ddl("CREATE TABLE t (m MAP<STRING,INT>)")
    with pytest.raises(SchemaError, match="letters"):
        parse_ddl("CREATE TABLE t (`bad-name` INT)")
    with pytest.raises(SchemaError, match="duplicate"):
        parse_ddl("CREATE TABLE t (a INT, A INT)")


def test_descriptor_mismatch_lists_every_difference(columns):
    d = reading_descriptor()
    fields = {f.name: f for f in d.field}
    fields["seq"].type = F.TYPE_INT32  # wrong type
    fields["kind"].label = F.LABEL_OPTIONAL  # NOT NULL column as optional
    fields["unit"].label = F.LABEL_REQUIRED  # nullable column as required
    d.field.remove(fields["loss_reason"])  # missing column
    d.field.add(name="extra", number=99, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)  # unknown field
    diffs = compare_descriptor(columns, d)
    text = "\n".join(diffs)
    assert "field 'seq' is int32, column 'seq' is BIGINT (needs int64)" in text
    assert "field 'kind' is optional, column 'kind' is NOT NULL (needs required)" in text
    assert "field 'unit' is required, column 'unit' is nullable (needs optional)" in text
    assert "column 'loss_reason' (STRING) has no field in the message" in text
    assert "field 'extra' (optional string) has no column in the table" in text
    assert len(diffs) == 5


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 8)), max_size=30))
def test_interval_set_matches_a_python_set(ranges):
    s, ref = IntervalSet(), set()
    for a, n in ranges:
        new = set(range(a, a + n + 1)) - ref
        assert s.add(a, a + n) == len(new)
        ref |= new
    assert s.count() == len(ref)
    assert all(b + 1 < c for (_, b), (c, _) in zip(s.ranges(), s.ranges()[1:]))  # disjoint, non-adjacent
    if ref:
        holes = set(range(min(ref), max(ref) + 1)) - ref
        assert {x for a, b in s.gaps() for x in range(a, b + 1)} == holes
        other = IntervalSet([(5, 9), (30, 40)])
        unc = other.uncovered(s.gaps())
        assert {x for a, b in unc for x in range(a, b + 1)} == holes - set(range(5, 10)) - set(range(30, 41))


def test_ledger_missing_unexplained_and_duplicates():
    led = Ledger(["t"])
    obs = lambda apps, seqs, kinds=None, extra=None: led.observe("t", apps, seqs, kinds or ["reading"] * len(seqs), extra or {}, 1)
    obs(["a"] * 10, list(range(0, 10)))  # 0..9
    obs(["a"] * 10, list(range(20, 30)))  # gap 10..19 (unexplained)
    obs(["a"], [30], ["loss"], {0: (30, 39)})  # marker at 30 covering 30..39
    obs(["a"] * 10, list(range(40, 50)))
    obs(["a"] * 5, list(range(45, 50)))  # 5 duplicates
    obs(["b", "a", "b"], [7, 60, 5])  # mixed batch: a gets 60 (gap 50..59), b gets 5 and 7
    t = led.snapshot()["tables"]["t"]
    assert (t["rows"], t["unique"], t["duplicates"]) == (39, 34, 5)
    a = t["appliances"]["a"]
    assert (a["min_seq"], a["max_seq"]) == (0, 60)
    assert a["missing"] == [[10, 19], [31, 39], [50, 59]]
    assert a["unexplained_missing"] == [[10, 19], [50, 59]]
    assert a["loss_markers"] == 1 and a["readings_covered_by_markers"] == 10
    assert t["appliances"]["b"]["missing"] == [[6, 6]]


def test_proto_codec_validates_and_extracts_keys(columns):
    codec = ProtoCodec(reading_descriptor().SerializeToString(), columns)
    recs = readings("ap", range(5, 8)) + [marker("ap", 8, 12)]
    d = codec.decode(recs)
    assert (d.apps, d.seqs, d.kinds) == (["ap"] * 4, [5, 6, 7, 8], ["reading", "reading", "reading", "loss"])
    assert d.extra == {3: (8, 12)}
    bad = Reading(kind="reading", seq=1).SerializePartialToString()
    with pytest.raises(RecordRejected) as exc:
        codec.decode(recs + [bad])
    assert exc.value.index == 4 and "appliance_id" in exc.value.reason
    with pytest.raises(RecordRejected, match="does not parse") as exc:
        codec.decode([recs[0], b"\x0a\xff\xff\xff"])
    assert exc.value.index == 1
    small = ProtoCodec(reading_descriptor().SerializeToString(), columns, max_record_bytes=50)
    with pytest.raises(RecordRejected, match="over the 50-byte per-record limit"):
        small.decode(recs)


def test_json_codec(columns):
    codec = JsonCodec(columns)
    ok = json.dumps({"appliance_id": "j", "seq": 3, "kind": "reading", "value_double": 1.5, "source_ts": "17"})
    d = codec.decode([ok])
    assert d.seqs == [3] and d.apps == ["j"]
    for rec, why in [
        ('{"appliance_id": "j", "kind": "reading"}', "missing NOT NULL column 'seq'"),
        ('{"appliance_id": "j", "seq": 1, "kind": "reading", "nope": 1}', "unknown column"),
        ('{"appliance_id": "j", "seq": 1, "kind": "reading", "value_bool": 1}', "value_bool"),
        ('{"appliance_id": "j", "seq": 9223372036854775808, "kind": "reading"}', "seq"),
        ("[1]", "must be an object"),
        ("{", "not valid JSON"),
    ]:
        with pytest.raises(RecordRejected, match=why):
            codec.decode([ok, rec])


def test_tokens_are_stateless_signed_and_expire():
    issuer = TokenIssuer(b"k" * 32, ttl_s=60)
    token, ttl = issuer.issue("cid", ("c.s.t",), now=1000)
    assert ttl == 60
    claims = TokenIssuer(b"k" * 32).verify(token, now=1059)  # a fresh issuer with the same key: a restart
    assert claims.client_id == "cid" and claims.grants("c.s.t") and not claims.grants("c.s.other")
    with pytest.raises(TokenInvalid, match="expired"):
        issuer.verify(token, now=1061)
    with pytest.raises(TokenInvalid, match="signature"):
        TokenIssuer(b"x" * 32).verify(token, now=1000)
    with pytest.raises(TokenInvalid):
        issuer.verify("garbage")


def _form(**over) -> dict:
    details = [
        {"type": "unity_catalog_privileges", "privileges": ["USE CATALOG"], "object_type": "CATALOG", "object_full_path": "c"},
        {"type": "unity_catalog_privileges", "privileges": ["USE SCHEMA"], "object_type": "SCHEMA", "object_full_path": "c.s"},
        {"type": "unity_catalog_privileges", "privileges": ["SELECT", "MODIFY"], "object_type": "TABLE", "object_full_path": "c.s.t"},
    ]
    form = {"grant_type": "client_credentials", "scope": "all-apis", "authorization_details": json.dumps(details),
            "resource": "api://databricks/workspaces/1234567890/zerobusDirectWriteApi"}
    form.update(over)
    return {k: v for k, v in form.items() if v is not None}


def test_token_form_is_checked_like_the_sdk_builds_it():
    assert check_token_form(_form()) == ("c.s.t",)
    assert check_token_form(_form(), workspace_id="1234567890") == ("c.s.t",)
    refusals = [
        (_form(grant_type="password"), "unsupported_grant_type"),
        (_form(scope=None), "invalid_scope"),
        (_form(scope="sql"), "invalid_scope"),
        (_form(resource=None), "invalid_target"),
        (_form(resource="api://databricks/workspaces/1/otherApi"), "invalid_target"),
        (_form(authorization_details=None), "invalid_authorization_details"),
        (_form(authorization_details="[{]"), "invalid_authorization_details"),
        # MODIFY without the USE CATALOG / USE SCHEMA the SDK always asks for alongside it
        (_form(authorization_details=json.dumps([{"type": "unity_catalog_privileges", "privileges": ["SELECT", "MODIFY"],
                                                  "object_type": "TABLE", "object_full_path": "c.s.t"}])), "invalid_authorization_details"),
    ]
    for form, error in refusals:
        with pytest.raises(TokenRequestError) as exc:
            check_token_form(form)
        assert exc.value.error == error, form
    with pytest.raises(TokenRequestError, match="workspace '1234567890'"):
        check_token_form(_form(), workspace_id="42")


def test_faults_validate_count_and_retire():
    f = Faults()
    with pytest.raises(FaultError, match="unknown fault"):
        f.update({"nope": 1})
    with pytest.raises(FaultError, match="status code"):
        f.update({"create_error": {"code": "BOGUS"}})
    with pytest.raises(FaultError, match="regular expression"):
        f.update({"reject_records": {"point": "("}})
    f.update({"fail_after_records": {"records": 10, "code": "internal"}, "close_after_records": {"records": 4, "times": 2}})
    assert f.count_records(3) == (None, None)
    assert f.count_records(2) == (None, 1000)  # 5 >= 4: close fires
    # 10 records: fail fires (its only time); close has seen 5 more and fires its second, last time
    assert f.count_records(5) == (("INTERNAL", "injected mid-stream fault"), 1000)
    assert f.count_records(40) == (None, None)
    assert f.snapshot()["active"] == {}
    assert f.snapshot()["fired"] == {"close_after_records": 2, "fail_after_records": 1}
    f.update({"token_error": {"status": 500, "times": 1}, "down": True})
    assert f.take_token_error() == 500 and f.take_token_error() is None and f.down
    f.update({"down": False})
    assert not f.down


def test_store_rows_by_runs_and_rebuild(tmp_path, columns):
    from simulators.zerobus.store import Store, runs_of

    assert runs_of(["a", "a", "b", "a", None, "a"], [1, 2, 7, 3, None, 4]) == [("a", 1, 2, 0), ("b", 7, 7, 2), ("a", 3, 3, 3), ("a", 4, 4, 5)]
    codec = ProtoCodec(reading_descriptor().SerializeToString(), columns)
    live = Ledger()
    store = Store(str(tmp_path / "s.sqlite"), live)
    store.start()
    batches = [
        readings("a", range(0, 50)),  # one run
        readings("a", range(40, 60)) + readings("b", range(5)) + [marker("a", 60, 69)],  # mixed: runs + marker
        readings("a", range(70, 80)),
    ]
    for i, recs in enumerate(batches):
        store.add_batch("t", "s1", i, codec.decode(recs)).result(timeout=10)
    rows = store.rows("t", "a", from_seq=38, limit=8)
    assert [(r["seq"], r["kind"]) for r in rows] == [(38, "reading"), (39, "reading"), (40, "reading"), (40, "reading"),
                                                     (41, "reading"), (41, "reading"), (42, "reading"), (42, "reading")]
    assert [r["seq"] for r in store.rows("t", "a", from_seq=49, limit=4)] == [49, 49, 50, 51]
    assert [r["seq"] for r in store.rows("t", "a", from_seq=59, limit=3)] == [59, 60, 70]
    assert [r["seq"] for r in store.rows("t", "b")] == [0, 1, 2, 3, 4]
    assert len(store.rows("t", limit=1000)) == 86
    store.close()
    rebuilt = Ledger()
    Store(str(tmp_path / "s.sqlite"), rebuilt).rebuild()
    assert rebuilt.snapshot() == live.snapshot()
    a = live.snapshot()["tables"]["t"]["appliances"]["a"]
    assert (a["missing"], a["unexplained_missing"]) == ([[61, 69]], [])


def _ranges(values: set[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for v in sorted(values):
        if out and v == out[-1][1] + 1:
            out[-1][1] = v
        else:
            out.append([v, v])
    return out


_record = st.tuples(st.sampled_from("abc"), st.integers(0, 40), st.booleans(), st.integers(0, 6))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(_record, min_size=1, max_size=25), min_size=1, max_size=6))
def test_stats_and_rows_match_brute_force(columns, batches):
    """Live /stats, /stats rebuilt from the store, and rows by appliance all agree with a brute-force count."""
    import tempfile

    from simulators.zerobus.store import Store

    codec = ProtoCodec(reading_descriptor().SerializeToString(), columns)
    with tempfile.TemporaryDirectory() as tmp:
        live = Ledger()
        store = Store(f"{tmp}/s.sqlite", live)
        store.start()
        arrived: list[tuple[str, int, int]] = []  # (app, seq, arrival)
        markers: dict[str, set[int]] = {}
        for off, batch in enumerate(batches):
            recs = []
            for app, seq, is_marker, width in batch:
                if is_marker:
                    recs.append(marker(app, seq, seq + width))
                    markers.setdefault(app, set()).update(range(seq, seq + width + 1))
                else:
                    recs += readings(app, [seq])
                arrived.append((app, seq, len(arrived)))
            store.add_batch("t", "s", off, codec.decode(recs)).result(timeout=10)
        for app in "abc":
            want = sorted(((s, n) for a, s, n in arrived if a == app))
            got = store.rows("t", app, from_seq=5, limit=7)
            assert [r["seq"] for r in got] == [s for s, _ in want if s >= 5][:7]
        store.close()
        rebuilt = Ledger()
        Store(f"{tmp}/s.sqlite", rebuilt).rebuild()
    snap = live.snapshot()["tables"]["t"]
    assert rebuilt.snapshot()["tables"]["t"] == snap
    keys = {(a, s) for a, s, _ in arrived}
    assert (snap["rows"], snap["unique"], snap["duplicates"]) == (len(arrived), len(keys), len(arrived) - len(keys))
    for app in {a for a, _, _ in arrived}:
        seen = {s for a, s in keys if a == app}
        holes = set(range(min(seen), max(seen) + 1)) - seen
        led = snap["appliances"][app]
        assert (led["min_seq"], led["max_seq"]) == (min(seen), max(seen))
        assert led["missing"] == _ranges(holes)
        assert led["unexplained_missing"] == _ranges(holes - markers.get(app, set()))


def test_committed_wire_modules_match_wire_proto(tmp_path):
    import os
    import subprocess
    import sys

    from simulators.kit.emulator import ROOT

    (tmp_path / "edge" / "pb").mkdir(parents=True)
    (tmp_path / "simulators" / "zerobus").mkdir(parents=True)
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    subprocess.run(["bash", "ops/gen_proto.sh", str(tmp_path)], cwd=ROOT, env=env, check=True, timeout=120)
    for name in ("wire_pb2.py", "wire_pb2_grpc.py"):
        fresh = (tmp_path / "simulators" / "zerobus" / name).read_text()
        assert fresh == (ROOT / "simulators" / "zerobus" / name).read_text(), f"{name} is stale: run bash ops/gen_proto.sh"


def test_pacer_admits_at_the_quota_rate_after_a_small_burst():
    from simulators.zerobus.realism import Pacer, Profile

    p = Pacer()
    prof = Profile(quota_records_per_s=1000)
    starts = [p.admit(prof, 500, 10, now=100.0) for _ in range(5)]  # five batches arrive at once
    assert starts == pytest.approx([100.0, 100.4, 100.9, 101.4, 101.9])
    assert p.admit(prof, 500, 10, now=200.0) == 200.0  # idle long enough: no debt carried
    both = Profile(quota_records_per_s=1000, quota_bytes_per_s=100)  # the bytes quota binds: 10 B = 0.1 s
    q = Pacer()
    assert [q.admit(both, 1, 10, now=0.0) for _ in range(3)] == pytest.approx([0.0, 0.0, 0.1])
    assert Pacer().admit(Profile(), 10**9, 10**12, now=5.0) == 5.0  # no quota: never waits


def test_ack_latency_median_and_p95_follow_the_profile():
    import random

    from simulators.zerobus.realism import Profile, ack_latency_s

    rng = random.Random(1)
    samples = sorted(ack_latency_s(Profile(ack_latency_ms=175, ack_jitter_ms=325), rng) for _ in range(20000))
    assert samples[10000] == pytest.approx(0.175, rel=0.05)
    assert samples[19000] == pytest.approx(0.500, rel=0.08)
    assert ack_latency_s(Profile(ack_latency_ms=150), rng) == 0.15
    assert ack_latency_s(Profile(), rng) == 0.0


def test_profile_overrides_through_faults():
    from simulators.zerobus.realism import REALISTIC

    f = Faults()
    f.update({"ack_delay_ms": 300})
    assert REALISTIC.with_overrides(f.overrides()).ack_latency_ms == 300
    assert REALISTIC.with_overrides(f.overrides()).ack_jitter_ms == 0  # the old fault meant a fixed delay
    f.update({"ack_latency_ms": 50, "quota_action": "reject", "stream_lifetime_s": 0})
    prof = REALISTIC.with_overrides(f.overrides())
    assert (prof.ack_latency_ms, prof.quota_action, prof.stream_lifetime_s) == (50, "reject", 0)
    assert prof.quota_records_per_s == 100_000  # untouched settings keep the startup profile
    for bad in ({"quota_action": "drop"}, {"ack_jitter_ms": -1}, {"stream_lifetime_s": "soon"}, {"quota_bytes_per_s": True}):
        with pytest.raises(FaultError):
            f.update(bad)
    f.update({"ack_latency_ms": None, "ack_delay_ms": None})
    assert "ack_latency_ms" not in f.overrides()
