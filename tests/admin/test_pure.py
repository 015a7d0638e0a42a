"""Pure parts of the admin page: settings, view model, charts, formats, metrics text, auth helpers, commands."""

from __future__ import annotations

import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge.admin import auth, charts, fmt, metrics, model, payloads
from edge.admin.store import MAX_TRACKED_ROWS, AdminStore
from edge.admin.settings import AdminConfig, AdminConfigError, credentials, metrics_token
from edge.config import parse
from edge.configtypes import ConfigError, Secret
from edge.control import commands
from edge.encode import encode_reading

from tests.admin.conftest import forwarder_state, source_state

# ---------------------------------------------------------------- settings


def test_refuses_to_start_without_an_admin_password():
    with pytest.raises(AdminConfigError, match="no admin password"):
        credentials(AdminConfig(), env={})


def test_password_from_env_and_from_a_docker_secret_file(tmp_path):
    assert credentials(AdminConfig(), env={"EDGE_ADMIN_PASSWORD": "x" * 12}) == {"admin": "x" * 12}
    secret = tmp_path / "pw"
    secret.write_text("from-secret-file\n")
    creds = credentials(AdminConfig(), env={"EDGE_ADMIN_PASSWORD_FILE": str(secret)})
    assert creds == {"admin": "from-secret-file"}
    with pytest.raises(AdminConfigError, match="cannot read EDGE_ADMIN_PASSWORD_FILE"):
        credentials(AdminConfig(), env={"EDGE_ADMIN_PASSWORD_FILE": str(tmp_path / "missing")})


def test_yaml_interpolation_feeds_the_password_and_the_repr_hides_it():
    cfg = parse({"appliance_id": "a", "admin": {"password": "${EDGE_ADMIN_PASSWORD}"}},
                env={"EDGE_ADMIN_PASSWORD": "yaml-secret-99"})
    assert credentials(cfg.admin, env={}) == {"admin": "yaml-secret-99"}
    assert "yaml-secret-99" not in repr(cfg)


@pytest.mark.parametrize("admin, env, match", [
    ({"password": "short"}, {}, "at least 8"),
    ({"password": "same-pass-1", "viewer_password": "same-pass-1"}, {}, "its own password"),
])
def test_unusable_passwords_are_refused(admin, env, match):
    with pytest.raises(AdminConfigError, match=match):
        credentials(AdminConfig(**{k: Secret(v) for k, v in admin.items()}), env=env)


def test_probe_token_mode_needs_a_token():
    with pytest.raises(AdminConfigError, match="metrics_token"):
        metrics_token(AdminConfig(probes="token"), env={})
    assert metrics_token(AdminConfig(probes="token"), env={"EDGE_METRICS_TOKEN": "t" * 10}) == "t" * 10


@pytest.mark.parametrize("key, value", [("bind", "8080"), ("workers", 0), ("refresh", "0.5s"),
                                        ("chart_window", "10s"), ("probes", "maybe")])
def test_config_errors_name_the_field(key, value):
    with pytest.raises(ConfigError, match=f"admin.{key}"):
        parse({"appliance_id": "a", "admin": {key: value}}, env={})


# ---------------------------------------------------------------- view model


def test_uplink_reads_an_open_cut_as_egress_down_and_keeps_the_reason():
    now = time.time()
    up = model.uplink(forwarder_state(), {"drain_rate_10s": 0.0}, now, 60)
    assert up["state"] == "egress_down" and up["state_raw"] == "backing_off"
    assert up["severity"] == "bad" and "connection refused" in up["reason"]
    assert up["last_ack_seq"] == 40 and not up["stale"]
    assert up["errors"][0]["phase"] == "connect"


def test_uplink_staleness_allows_for_a_blocked_forwarder_sleeping():
    now = time.time()
    rec = forwarder_state(state="blocked", reason="PERMISSION_DENIED on table", updated_ts=now - 200,
                          egress_cuts=[])
    assert model.uplink(rec, {}, now, 60)["stale"]
    up = model.uplink(rec, {}, now, 60, quiet_allowance={"blocked": 300})
    assert not up["stale"] and up["state"] == "blocked" and up["severity"] == "bad"
    assert model.uplink(None, {}, now, 60)["stale"]


def test_drill_timeline_takes_the_peak_from_samples_and_the_drain_from_the_forwarder():
    now = 10_000.0
    cuts = [{"started_ts": 1000.0, "recovered_ts": 1600.0, "drained_ts": 1700.0, "backlog_peak": 10, "errors": 2},
            {"started_ts": 9000.0, "recovered_ts": None, "open": True}]
    samples = model.normalize_samples([{"ts": t, "depth_rows": d} for t, d in
                                       [(900, 0), (1300, 5000), (1590, 12000), (1650, 3000), (1800, 0), (9500, 700)]])
    tl = model.drill_timeline(cuts, samples, now)
    assert [c["down_ts"] for c in tl] == [9000.0, 1000.0]
    assert tl[1]["peak_depth"] == 12000 and tl[1]["peak_ts"] == 1590
    assert tl[1]["outage_s"] == 600 and tl[1]["drain_s"] == 100
    assert tl[0]["ongoing"] and tl[0]["outage_s"] == 1000 and tl[0]["peak_depth"] == 700


def test_rates_come_from_counter_deltas_and_skip_resets():
    s = model.normalize_samples([{"ts": 0, "appended_total": 0}, {"ts": 10, "appended_total": 100},
                                 {"ts": 20, "appended_total": 50}, {"ts": 30, "appended_total": 150}])
    assert model.rates(s, "in") == [(10, 10.0), (30, 10.0)]


def test_sources_rate_from_an_earlier_observation():
    now = time.time()
    rec = source_state("m", readings_total=1500, updated_ts=now)
    row = model.sources({"m": rec}, now, {"m": (now - 10, 1000)})[0]
    assert row["rate"] == pytest.approx(50.0)
    assert row["severity"] == "ok" and row["last_error"].startswith("bad json")


def test_status_overall_prefers_alarms_then_budget_then_uplink():
    base = dict(appliance_id="a", states_by_kind={}, samples=[], version="v", started=0.0)
    s = model.status(stats={"budget_used_pct": 95.0}, **base)
    assert s["overall"]["severity"] == "bad" and "95%" in s["overall"]["headline"]
    s = model.status(stats={"alarms": [{"name": "disk_low", "value": {"message": "1% free"}}]}, **base)
    assert s["overall"]["headline"] == "Spool alarm: disk_low" and s["health"]["alarms"][0]["message"] == "1% free"
    s = model.status(stats={}, spool_error="SpoolError: no spool", **base)
    assert s["overall"]["headline"] == "Spool unreadable" and not s["health"]["spool_readable"]


def test_a_stopped_or_missing_forwarder_is_never_reported_as_delivering():
    base = dict(appliance_id="a", stats={}, samples=[], version="v", started=0.0)
    s = model.status(states_by_kind={"forwarder": {"main": forwarder_state(state="stopped", egress_cuts=[])}}, **base)
    assert s["overall"]["headline"] == "Forwarder not running" and s["overall"]["severity"] == "warn"
    s = model.status(states_by_kind={}, **base)
    assert s["overall"]["headline"] == "No forwarder state"
    s = model.status(states_by_kind={"forwarder": {"main": forwarder_state(state="streaming", reason="",
                                                                                egress_cuts=[])}}, **base)
    assert s["overall"] == {"severity": "ok", "headline": "Delivering", "detail": ""}


def test_normalize_states_accepts_reader_records():
    recs = [{"kind": "source", "name": "x", "value": {"state": "up"}, "updated_ts": 5.0}]
    assert model.normalize_states(recs) == {"x": {"state": "up", "updated_ts": 5.0}}


# ---------------------------------------------------------------- charts and formats


@pytest.mark.parametrize("v, want", [(0, 1.0), (0.7, 1.0), (3, 5), (11, 20), (240, 250), (9_001, 10_000)])
def test_nice_ceiling(v, want):
    assert charts.nice_ceiling(v) == want


@pytest.mark.parametrize("v, want", [(5050, 6000), (2500, 2500), (0.3, 0.3), (120, 150), (7, 8)])
def test_nice_step(v, want):
    assert charts.nice_step(v) == pytest.approx(want)


def test_line_chart_draws_lines_bands_and_escapes_labels():
    svg = str(charts.line_chart([("a<b", [(0, 1), (50, 3), (100, 2)], "s-in")], t0=0, t1=100,
                                title="T&T", marks=[(20, 40)]))
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count('<path class="chart-line s-in"') == 1 and 'class="chart-cut"' in svg
    assert "a&lt;b" in svg and "T&amp;T" in svg and "style=" not in svg
    assert "no samples yet" in str(charts.line_chart([("x", [], "s-in")], t0=0, t1=10, title="t"))


@pytest.mark.parametrize("f, v, want", [
    (fmt.duration, 4.25, "4.2s"), (fmt.duration, 75, "1m 15s"), (fmt.duration, 7260, "2h 01m"),
    (fmt.duration, 200_000, "2d 7h"), (fmt.duration, None, "–"), (fmt.size, 1536, "1.5 KiB"),
    (fmt.size, 3 * 1024**3, "3.0 GiB"), (fmt.num, 1234567, "1,234,567"), (fmt.rate, 1234.5, "1,234/s"),
    (fmt.rate, 2.25, "2.2/s"), (fmt.label, "egress_down", "egress down"),
])
def test_formats(f, v, want):
    assert f(v) == want


# ---------------------------------------------------------------- metrics


def _families(text):
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_metrics_text_parses_and_carries_the_documented_names():
    now = time.time()
    stats = {"depth_rows": 60, "depth_bytes": 5000, "budget_bytes": 10_000, "oldest_age_s": 12.5,
             "appended_total": 100, "delivered_total": 40, "dropped": {"drop_oldest": 7}, "loss_markers_written": 2,
             "wal_bytes": 4096, "disk_free_bytes": 10**9, "ingest_rate_10s": 5.0, "drain_rate_10s": 1.0}
    fwd = forwarder_state()
    s = model.status(appliance_id="a\"b", stats=stats, states_by_kind={
        "forwarder": {"main": fwd}, "source": {"m1": source_state("m1")}}, samples=[], version="1", started=now)
    fams = _families(metrics.render(s, stats, fwd))
    val = lambda name, **labels: next(  # noqa: E731
        x.value for x in fams[name].samples if all(x.labels.get(k) == v for k, v in labels.items()))
    assert val("zerobus_edge_spool_depth_readings") == 60
    assert val("zerobus_edge_readings_spooled") == 100 and val("zerobus_edge_readings_forwarded") == 40
    assert val("zerobus_edge_readings_dropped", cause="drop_oldest") == 7
    assert val("zerobus_edge_readings_dropped", cause="expired") == 0
    assert val("zerobus_edge_forwarder_state", state="egress_down") == 1
    assert val("zerobus_edge_forwarder_state", state="streaming") == 0
    assert val("zerobus_edge_source_readings", source="m1") == 1234
    assert val("zerobus_edge_spool_oldest_age_seconds") == 12.5
    assert val("zerobus_edge_build_info", appliance_id='a"b') == 1
    hist = fams["zerobus_edge_ack_latency_seconds"]
    assert hist.type == "histogram"
    assert {x.labels.get("le"): x.value for x in hist.samples if x.name.endswith("_bucket")}["0.01"] == 2
    assert next(x.value for x in hist.samples if x.name.endswith("_count")) == 9
    assert all(f.name.startswith("zerobus_edge_") for f in fams.values())


def test_metrics_leave_out_unknown_gauges_but_keep_counters():
    s = model.status(appliance_id="a", stats={}, states_by_kind={}, samples=[], version="1", started=0.0,
                     spool_error="SpoolError: x")
    fams = _families(metrics.render(s, {}, None))
    assert "zerobus_edge_spool_depth_readings" not in fams
    assert fams["zerobus_edge_spool_readable"].samples[0].value == 0
    assert fams["zerobus_edge_readings_forwarded"].samples[0].value == 0


# ---------------------------------------------------------------- auth, commands, payloads


def test_login_limiter_window(tmp_path):
    clock = [1000.0]
    lim = auth.LoginLimiter(AdminStore(tmp_path), 3, 60, clock=lambda: clock[0])
    for _ in range(3):
        assert lim.retry_after("ip", "admin") == 0
        lim.failed("ip", "admin")
    assert lim.retry_after("ip", "admin") > 0 and lim.retry_after("other", "admin") == 0
    clock[0] = 1061
    assert lim.retry_after("ip", "admin") == 0


def test_login_limits_are_shared_by_every_worker_and_survive_a_restart(tmp_path):
    """Before: the limit lived in each worker's memory; a worker restart or another worker forgot it."""
    one = auth.LoginLimiter(AdminStore(tmp_path), 3, 300)
    for _ in range(3):
        one.failed("10.0.0.9", "admin")
    other_worker = auth.LoginLimiter(AdminStore(tmp_path), 3, 300)  # another process, same state dir
    assert other_worker.retry_after("10.0.0.9", "admin") > 0


def test_another_roles_success_does_not_reset_the_count(tmp_path):
    """Before: any successful login from the address (a viewer's, say) cleared the admin guesses."""
    lim = auth.LoginLimiter(AdminStore(tmp_path), 3, 300)
    for _ in range(3):
        lim.failed("10.0.0.9", "admin")
    lim.succeeded("10.0.0.9", "viewer")
    assert lim.retry_after("10.0.0.9", "admin") > 0


def test_a_spray_of_addresses_is_bounded_and_resets_no_one(tmp_path):
    """Before: more than 10,000 addresses cleared every count (memory bound by clear()). Real limits: 10,500
    addresses guess once each; the table stays bounded, the first address stays locked out, and the addresses
    beyond the store's room share one count (5 guesses between them, not 5 each)."""
    store = AdminStore(tmp_path)
    lim = auth.LoginLimiter(store, 5, 300)
    for _ in range(5):
        lim.failed("10.0.0.9", "admin")
    refused_late = 0
    for i in range(10_500):
        client = f"2001:db8::{i:x}"
        if lim.retry_after(client, "admin") > 0:
            refused_late += 1
            continue
        lim.failed(client, "admin")
    assert lim.retry_after("10.0.0.9", "admin") > 0  # still locked out
    assert store.count_failure_rows() <= MAX_TRACKED_ROWS + 5
    assert refused_late >= 10_500 - MAX_TRACKED_ROWS - 5  # past the room, the spray shares one bucket
    # An address counted before the room ran out keeps its own count (1 guess); a new one shares the bucket.
    assert lim.retry_after("2001:db8::1", "admin") == 0 and lim.retry_after("2001:db8::ffff:1", "admin") > 0
    assert lim.retry_after("2001:db8::ffff:1", "viewer") == 0  # per role


def test_a_password_is_checked_against_the_role_named_only():
    creds = {"admin": "a" * 10, "viewer": "v" * 10}
    assert auth.check_password(creds, "admin", "a" * 10) and not auth.check_password(creds, "admin", "v" * 10)
    assert not auth.check_password(creds, "operator", "") and not auth.check_password(creds, "nobody", "a" * 10)
    assert auth.allowed("admin", "operator") and not auth.allowed("viewer", "operator")
    assert not auth.allowed(None, "viewer")


def test_admin_store_is_private(tmp_path):
    store = AdminStore(tmp_path / "state")
    assert store.path.stat().st_mode & 0o077 == 0 and (tmp_path / "state").stat().st_mode & 0o077 == 0
    assert store.tag("admin", "pw-one-xx") != store.tag("admin", "pw-two-xx")
    assert store.tag("admin", "pw-one-xx") == AdminStore(tmp_path / "state").tag("admin", "pw-one-xx")


def test_commands_round_trip(tmp_path):
    d = tmp_path / "cmds"
    a = commands.submit(d, "pause_forwarding", {}, by="operator")
    commands.submit(d, "retry_dead_letter", {"id": 3}, by="admin")
    assert [c["action"] for c in commands.pending(d)] == ["pause_forwarding", "retry_dead_letter"]
    assert commands.pause_requested(d) is True
    commands.complete(d, a["id"], ok=True, detail="paused")
    assert [c["action"] for c in commands.pending(d)] == ["retry_dead_letter"]
    done = [c for c in commands.recent(d) if c["id"] == a["id"]][0]
    assert done["status"] == "done" and done["detail"] == "paused"
    with pytest.raises(commands.CommandError):
        commands.submit(d, "drop_table", {}, by="admin")


def test_commands_directory_follows_the_config(tmp_path):
    cfg = parse({"appliance_id": "a", "data_dir": str(tmp_path)}, env={})
    assert commands.directory(cfg) == tmp_path / "admin-commands"
    cfg = parse({"appliance_id": "a", "admin": {"commands_dir": str(tmp_path / "x")}}, env={})
    assert commands.directory(cfg) == tmp_path / "x"


def test_commands_process_honours_refuses_and_answers_unsupported(tmp_path):
    d = tmp_path / "cmds"
    seen = []
    commands.submit(d, "checkpoint_wal", {}, by="operator")
    commands.submit(d, "retry_dead_letter", {"id": 9}, by="admin")
    commands.submit(d, "pause_forwarding", {}, by="operator")

    def retry(args):
        seen.append(args["id"])
        raise LookupError("no dead letter 9")

    assert commands.process(d, {"checkpoint_wal": lambda a: "wal 0 bytes", "retry_dead_letter": retry}) == 3
    assert commands.pending(d) == [] and seen == [9]
    out = {c["action"]: (c["status"], c["detail"]) for c in commands.recent(d)}
    assert out == {"checkpoint_wal": ("done", "wal 0 bytes"),
                   "retry_dead_letter": ("refused", "LookupError: no dead letter 9"),
                   "pause_forwarding": ("refused", "not supported by this appliance")}


def test_payloads_are_bounded_and_control_bytes_made_visible():
    raw = b"\x00\x1b[2J<script>" + b"A" * 10_000
    shown = payloads.printable(raw)
    assert shown["truncated"] and shown["size"] == len(raw) and len(shown["text"]) <= payloads.MAX_SHOW + 32
    assert "\\x00" in shown["text"] and "\x1b" not in shown["text"]
    dl = payloads.dead_letter({"id": 1, "seq": 7, "reason": "bad", "ts": 1.0,
                               "body": encode_reading(source="s", protocol="p", point="x", value=3)})
    assert dl["decoded"]["ok"] and dl["decoded"]["fields"]["value_int"] == 3 and dl["seq"] == 7


def test_time_to_drain_says_caught_up_when_delivery_keeps_pace():
    """Before: a live spool (a few hundred in flight, drain == ingest) showed "stalled - not draining faster
    than ingest"; it is caught up."""
    live = model.backlog({"depth_rows": 400, "depth_seqs": 400, "ingest_rate_10s": 1000.0, "drain_rate_10s": 1000.0,
                          "drain_eta_s": None}, now=0)
    assert (live["drain_state"], live["drain_value"]) == ("caught_up", "caught up")
    assert "stalled" not in live["drain_note"] and "faster" not in live["drain_note"]
    assert model.backlog({"depth_rows": 0, "depth_seqs": 0, "drain_eta_s": 0.0}, now=0)["drain_value"] == "drained"
    draining = model.backlog({"depth_rows": 90_000, "depth_seqs": 90_000, "ingest_rate_10s": 100.0,
                              "drain_rate_10s": 1000.0, "drain_eta_s": 100.0}, now=0)
    assert draining["drain_state"] == "draining" and draining["drain_value"] is None
    behind = model.backlog({"depth_seqs": 90_000, "ingest_rate_10s": 1000.0, "drain_rate_10s": 500.0}, now=0)
    assert behind["drain_state"] == "falling_behind"
    cut = model.backlog({"depth_seqs": 90_000, "ingest_rate_10s": 1000.0, "drain_rate_10s": 0.0}, now=0)
    assert (cut["drain_state"], cut["drain_value"]) == ("stalled", "stalled")


def test_a_cut_is_dated_from_the_last_ack_not_from_its_detection():
    """Before: the forwarder notices a dead link an ack timeout (~30 s) after the last ack; the timeline
    dated the cut from the detection."""
    now = 10_000.0
    cuts = [{"started_ts": 1000.0, "recovered_ts": 1600.0, "drained_ts": 1700.0},
            {"started_ts": 9030.0, "recovered_ts": None, "open": True}]
    # delivered_total moves until 975, then stands still through the detection at 1000
    samples = model.normalize_samples([{"ts": t, "depth_rows": 10, "appended_total": t, "delivered_total": d}
                                       for t, d in [(950, 100), (960, 200), (975, 300), (990, 300), (1005, 300)]])
    tl = model.drill_timeline(cuts, samples, now, last_ack_ts=9001.5)
    assert [(c["down_ts"], c["detected_ts"]) for c in tl] == [(9001.5, 9030.0), (975.0, 1000.0)]
    assert tl[0]["outage_s"] == now - 9001.5 and tl[1]["outage_s"] == 1600 - 975
    fwd = {"state": "backing_off", "updated_ts": now, "last_ack_ts": 9001.5, "egress_cuts": cuts}
    doc = model.status(appliance_id="a", stats={}, states_by_kind={"forwarder": {"main": fwd}}, samples=samples,
                       version="t", started=0, now=now)
    assert doc["drills"][0]["down_ts"] == 9001.5


def test_a_stalled_uplink_is_never_headlined_delivering():
    """The headline said "Delivering" (severity ok) while the forwarder said stalled: no ack, batches in flight."""
    now = 10_000.0
    fwd = {"state": "stalled", "reason": "no ack for 3.2s with 4 batch(es) in flight", "updated_ts": now,
           "last_ack_ts": now - 3.3, "egress_cuts": [{"started_ts": now - 3.3, "open": True}]}
    doc = model.status(appliance_id="a", stats={"depth_seqs": 900, "ingest_rate_10s": 300.0, "drain_rate_10s": 200.0},
                       states_by_kind={"forwarder": {"main": fwd}}, samples=[], version="t", started=0, now=now)
    assert (doc["overall"]["severity"], doc["overall"]["headline"]) == ("bad", "Uplink stalled")
    assert "no ack" in doc["overall"]["detail"] and doc["backlog"]["drain_value"] == "stalled"


def test_time_to_drain_is_not_caught_up_when_delivery_falls_short_of_ingest():
    """A cut a few seconds old: some acks still in the 10 s window, the backlog small but growing."""
    b = model.backlog({"depth_seqs": 6000, "ingest_rate_10s": 2000.0, "drain_rate_10s": 900.0}, now=0)
    assert b["drain_state"] == "falling_behind"


def test_time_to_drain_says_stalled_while_the_uplink_is_down_even_before_the_rates_catch_up():
    """Seconds after a cut the 10 s drain rate still counts acks from before it (the browser drill saw "growing")."""
    now = 10_000.0
    stats = {"depth_seqs": 13_450, "depth_rows": 13_450, "ingest_rate_10s": 2000.0, "drain_rate_10s": 1270.0}
    fwd = {"state": "backing_off", "updated_ts": now, "last_ack_ts": now - 6,
           "egress_cuts": [{"started_ts": now - 5, "open": True}]}
    doc = model.status(appliance_id="a", stats=stats, states_by_kind={"forwarder": {"main": fwd}}, samples=[],
                       version="t", started=0, now=now)
    assert doc["uplink"]["state"] == "egress_down"
    assert (doc["backlog"]["drain_state"], doc["backlog"]["drain_value"]) == ("stalled", "stalled")
    assert "egress down" in doc["backlog"]["drain_note"]


def test_the_stored_password_tag_is_a_slow_salted_hash(tmp_path):
    """A reader of the admin store (key and tags side by side) must pay a password hash per guess: before, the
    tag was one HMAC-SHA256, millions of guesses a second."""
    import hashlib
    import hmac
    import time as _time

    store = AdminStore(tmp_path)
    t0 = _time.perf_counter()
    tag = store.tag("admin", "pw-one-xx")
    assert _time.perf_counter() - t0 > 0.01  # scrypt's memory-hard work, not a single hash
    assert tag != hmac.new(store._key, b"admin\0pw-one-xx", hashlib.sha256).hexdigest()
    assert tag == hashlib.scrypt(b"admin\0pw-one-xx", salt=store._key, n=2**14, r=8, p=1, dklen=32).hex()
    assert tag != AdminStore(tmp_path / "other").tag("admin", "pw-one-xx")  # salted per store
