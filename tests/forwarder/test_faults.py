"""Each injected fault, against the real SDK and the emulator: nothing lost, duplicates bounded, state visible."""

from __future__ import annotations

import time

import pytest

from edge.spool import SpoolReader
from tests.forwarder.conftest import wait_for

WINDOW_ROWS = 4 * 200  # max_inflight_batches x batch_max_records of make_cfg


def _assert_complete(rig, first: int, last: int) -> dict:
    led = rig.ledger()
    assert (led["min_seq"], led["max_seq"]) == (first, last), led
    assert led["unexplained_missing_count"] == 0, led
    return led


def _seen_states(fwd, until, timeout=20.0) -> set[str]:
    seen = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen.add(fwd.state()["state"])
        if until(seen):
            break
        time.sleep(0.01)
    return seen


def test_unavailable_at_creation_backs_off_then_drains(rig):
    res = rig.append(500)
    rig.emu.set_faults({"create_error": {"code": "UNAVAILABLE", "times": 3}})
    fwd = rig.start()
    rig.wait_delivered(res.last_seq)
    _assert_complete(rig, res.first_seq, res.last_seq)
    st = fwd.state()
    assert st["failures_total"] >= 3
    assert any(e["phase"] == "create" and e["kind"] == "Retry" for e in st["recent_errors"])
    assert rig.emu.table_stats()["duplicates"] == 0


@pytest.mark.parametrize("streams", [1, 3])
def test_mid_stream_error_resends_from_the_watermark(rig, streams):
    res = rig.append(3000)
    rig.emu.set_faults({"fail_after_records": {"records": 700, "code": "UNAVAILABLE", "times": 2}})
    fwd = rig.start(streams=streams)
    rig.wait_delivered(res.last_seq)
    _assert_complete(rig, res.first_seq, res.last_seq)
    st = fwd.state()
    assert rig.emu.faults()["fired"]["fail_after_records"] == 2
    # With several streams both faults may hit the same session: one failure, one resend.
    assert st["failures_total"] >= (2 if streams == 1 else 1) and st["resent_total"] > 0
    assert rig.emu.table_stats()["duplicates"] <= 2 * streams * WINDOW_ROWS


def test_delayed_acks_are_waited_for_not_resent(rig):
    res = rig.append(1000)
    rig.emu.set_faults({"ack_delay_ms": 300})
    fwd = rig.start(ack_timeout=5)
    rig.wait_delivered(res.last_seq)
    _assert_complete(rig, res.first_seq, res.last_seq)
    assert rig.emu.table_stats()["duplicates"] == 0
    assert fwd.state()["failures_total"] == 0
    buckets = dict((str(b), n) for b, n in fwd.state()["ack_latency_buckets"])
    assert buckets["0.25"] < buckets["+Inf"]  # latency histogram saw the delay


def test_never_ack_bounds_duplicates_and_holds_the_watermark(rig):
    res = rig.append(2000)
    before = rig.watermark()
    rig.emu.set_faults({"never_ack": True})
    fwd = rig.start(ack_timeout=1)
    st = wait_for(lambda: (s := fwd.state())["failures_total"] >= 2 and s, what="two ack timeouts")
    received = rig.emu.table_stats()["rows"]
    assert rig.watermark() == before  # nothing acked, nothing deleted
    attempts = st["stream_creations_total"]
    assert attempts >= 2 and st["recent_errors"][-1]["phase"] == "ack"  # it kept trying, timing out on acks
    assert received <= attempts * WINDOW_ROWS  # one window per attempt, no SDK resend storm
    assert st["acked_total"] == 0 and st["state"] in ("backing_off", "streaming", "connecting")
    rig.emu.clear_faults()
    rig.wait_delivered(res.last_seq)
    _assert_complete(rig, res.first_seq, res.last_seq)
    st = fwd.state()
    assert rig.emu.table_stats()["duplicates"] <= st["stream_creations_total"] * WINDOW_ROWS
    # It never was healthy before the fault: a start against a silent server is no egress cut.
    assert st["egress_cuts_total"] == 0 and st["egress_cuts"] == []


def test_close_stream_signal_reconnects_without_loss(rig):
    res = rig.append(3000)
    rig.emu.set_faults({"ack_delay_ms": 30, "close_after_records": {"records": 600, "duration_ms": 50, "times": 2}})
    fwd = rig.start()
    rig.wait_delivered(res.last_seq)
    _assert_complete(rig, res.first_seq, res.last_seq)
    assert rig.emu.faults()["fired"].get("close_after_records") == 2
    # A stream the server closed while we were idle is replaced before the next reading needs it.
    more = rig.append(100)
    rig.wait_delivered(more.last_seq)
    _assert_complete(rig, res.first_seq, more.last_seq)
    table = rig.emu.table_stats()
    assert table["streams_opened"] >= 2
    assert table["duplicates"] <= 2 * WINDOW_ROWS
    st = fwd.state()
    assert st["stream_creations_total"] == table["streams_opened"]
    # A server-side rotation is not an outage on the drill timeline. But when the signal races a
    # batch the SDK is still sending, the SDK reports a plain internal error ("Failed to send
    # batch") that no client can tell from a real failure: at most that one may count.
    assert st["egress_cuts_total"] <= 1


def test_token_endpoint_5xx_is_retried(rig):
    res = rig.append(300)
    rig.emu.set_faults({"token_error": {"status": 503, "times": 3}})
    fwd = rig.start()
    rig.wait_delivered(res.last_seq)
    _assert_complete(rig, res.first_seq, res.last_seq)
    errors = fwd.state()["recent_errors"]
    assert any(e["kind"] == "Retry" and "503" in e["reason"] for e in errors), errors


def _blocked_then_recovers(rig, faults: dict, words: tuple[str, ...]):
    res = rig.append(300)
    rig.emu.set_faults(faults)
    fwd = rig.start()
    st = rig.wait_state("blocked")
    assert any(w in st["reason"].lower() for w in words), st["reason"]
    # Blocked keeps the data: nothing acked, nothing deleted, and the state is persisted for the admin page.
    assert rig.watermark() == res.first_seq - 1

    def persisted():
        with SpoolReader(rig.path) as r:
            return {s["name"]: s for s in r.states("forwarder")}.get("main")
    wait_for(lambda: "blocked" in str(persisted()), what="the blocked state persisted")
    rig.emu.clear_faults()
    rig.wait_delivered(res.last_seq)
    _assert_complete(rig, res.first_seq, res.last_seq)
    assert fwd.state()["state"] in ("idle", "streaming")


def test_token_endpoint_4xx_blocks_visibly_and_recovers(rig):
    _blocked_then_recovers(rig, {"token_error": {"status": 401}}, ("401", "credential"))


def test_table_not_found_blocks_and_recovers(rig):
    _blocked_then_recovers(rig, {"create_error": {"code": "NOT_FOUND", "message": "table does not exist"}}, ("not found",))


def test_permission_denied_blocks_and_recovers(rig):
    _blocked_then_recovers(rig, {"create_error": {"code": "PERMISSION_DENIED", "message": "no MODIFY"}}, ("permission",))


def test_rejected_record_is_dead_lettered_and_everything_else_delivered(rig):
    bad_index = 437
    res = rig.append(1000, start=0, bad={bad_index})
    bad_seq = res.first_seq + bad_index
    rig.emu.set_faults({"reject_records": {"point": "bad/.*"}})
    fwd = rig.start()
    rig.wait_delivered(res.last_seq)
    led = _assert_complete(rig, res.first_seq, res.last_seq)
    # Its slot carried a loss marker, so the gap is explained downstream.
    assert led["missing_count"] == 0, led  # the marker occupies the slot
    assert led["loss_markers"] == 1 and led["unexplained_missing_count"] == 0
    with SpoolReader(rig.path) as r:
        dead = r.dead_letters(10)
    assert [d["seq"] for d in dead] == [bad_seq]
    assert "reject" in dead[0]["reason"].lower()
    st = fwd.state()
    assert st["dead_lettered_total"] == 1
    assert any(e["kind"] == "RejectRecord" for e in st["recent_errors"])
    assert rig.emu.table_stats()["duplicates"] <= 2 * WINDOW_ROWS


def test_emulator_sigkill_and_restart_resumes_without_loss(rig):
    res = rig.append(6000)
    fwd = rig.start(batch_max_records=100)
    rig.emu.set_faults({"ack_delay_ms": 20})
    deadline = time.monotonic() + 20
    while rig.watermark() < res.first_seq + 1000 and time.monotonic() < deadline:
        time.sleep(0.01)
    rig.emu.kill()
    wm = rig.watermark()
    # Everything at or below the watermark must be durable in the (killed) emulator's store.
    wait_for(lambda: fwd.state()["state"] in ("backing_off", "connecting"), what="the forwarder noticing the kill")
    rig.emu.start()
    led = rig.ledger()
    assert led["min_seq"] == res.first_seq and led["max_seq"] >= wm
    assert not [m for m in led["missing"] if m[0] <= wm], led["missing"]  # watermark never passed an unacked seq
    rig.wait_delivered(res.last_seq, timeout=60)
    _assert_complete(rig, res.first_seq, res.last_seq)
    st = fwd.state()
    assert st["egress_cuts_total"] >= 1


def test_egress_cut_is_recorded_for_the_drill_timeline(rig):
    res = rig.append(2000)
    fwd = rig.start(batch_max_records=100)
    rig.wait_delivered(res.last_seq)
    rig.wait_state("idle")
    rig.emu.set_faults({"down": True})
    more = rig.append(500)  # arrives during the cut: stays in the spool
    # The cut lasts until the forwarder has failed at least twice (it backs off and retries).
    wait_for(lambda: (c := fwd.state()["egress_cuts"]) and c[-1].get("open") and c[-1]["errors"] >= 2,
             what="an open cut with two failures")
    rig.append(500)
    # The peak is sampled during the cut (each backoff second, and as a session starts): wait for it to see
    # this append before the link comes back (cleared at once, a session begun before it could succeed first).
    wait_for(lambda: fwd.state()["egress_cuts"][-1].get("backlog_peak", 0) >= 1000, what="the cut's peak backlog")
    assert fwd.state()["egress_cuts"][-1].get("open") is True
    rig.emu.set_faults({"down": False})
    rig.wait_delivered(more.last_seq + 500, timeout=60)
    rig.wait_state("idle")
    st = fwd.state()
    assert st["egress_cuts_total"] == 1
    cut = st["egress_cuts"][-1]
    assert "open" not in cut
    assert cut["outage_s"] > 0 and cut["drain_s"] is not None and cut["drain_s"] > 0
    assert cut["recovered_ts"] < cut["drained_ts"]
    assert cut["backlog_start"] <= cut["backlog_peak"] and cut["backlog_peak"] >= 1000
    assert cut["errors"] >= 2
    _assert_complete(rig, res.first_seq, more.last_seq + 500)


def test_drop_oldest_under_pressure_leaves_every_seq_accounted_for(tmp_path, emulator):
    from tests.forwarder.conftest import Rig

    rig = Rig(tmp_path, emulator, max_bytes=300_000, when_full="drop_oldest")
    try:
        emulator.set_faults({"ack_delay_ms": 150})
        first = rig.append(500)
        fwd = rig.start(batch_max_records=100, max_inflight_batches=2)
        last = first
        for _ in range(30):  # far more than the budget holds while the forwarder crawls
            last = rig.append(500)
            time.sleep(0.01)
        emulator.clear_faults()
        rig.wait_delivered(last.last_seq, timeout=60)
        led = rig.ledger()
        assert (led["min_seq"], led["max_seq"]) == (first.first_seq, last.last_seq)
        assert led["missing_count"] > 0  # readings were dropped...
        assert led["unexplained_missing_count"] == 0, led  # ...and every one is covered by a delivered marker
        assert led["loss_markers"] >= 1
        assert fwd.state()["acked_total"] > 0
    finally:
        rig.close()


def test_record_over_the_service_limit_is_dead_lettered_not_retried_forever(rig):
    from edge.encode import encode_reading

    before = rig.append(300)
    huge = encode_reading(source="t", protocol="synthetic", point="blob", value="x" * (4 * 1024 * 1024 + 10))
    big = rig.writer.submit([(1, huge)]).result(30)
    after = rig.append(300)
    fwd = rig.start(batch_max_bytes=8 << 20)
    rig.wait_delivered(after.last_seq, timeout=60)
    led = _assert_complete(rig, before.first_seq, after.last_seq)
    assert led["loss_markers"] == 1
    with SpoolReader(rig.path) as r:
        dead = r.dead_letters(10)
    assert [d["seq"] for d in dead] == [big.first_seq]
    assert "limit" in dead[0]["reason"]
    assert fwd.state()["dead_lettered_total"] == 1


def test_retry_now_cuts_a_blocked_wait_short(rig):
    res = rig.append(100)
    rig.emu.set_faults({"create_error": {"code": "PERMISSION_DENIED", "message": "no MODIFY"}})
    fwd = rig.start(blocked_retry=600)
    rig.wait_state("blocked")
    rig.emu.clear_faults()
    assert fwd.state()["state"] == "blocked"  # it would wait its blocked_retry (10 min)...
    fwd.retry_now()  # ...unless an operator says the cause is fixed
    rig.wait_delivered(res.last_seq, timeout=10)


def test_stop_is_bounded_even_when_the_server_never_acks(rig):
    rig.append(2000)
    rig.emu.set_faults({"never_ack": True})
    fwd = rig.start(ack_timeout=60)
    rig.wait_state("streaming")
    t0 = time.monotonic()
    assert fwd.stop(15)
    assert time.monotonic() - t0 < 8  # STOP_GRACE for the window, then the streams are dropped
    assert fwd.state()["state"] == "stopped"
    rig.fwd = None


def test_pause_finishes_the_window_then_holds_until_resume(rig):
    res = rig.append(3000)
    rig.emu.set_faults({"ack_delay_ms": 30})
    fwd = rig.start(batch_max_records=100)
    deadline = time.monotonic() + 20
    while rig.watermark() < res.first_seq + 300 and time.monotonic() < deadline:
        time.sleep(0.01)
    fwd.pause()
    st = rig.wait_state("paused")
    assert "operator" in st["reason"] and st["batches_in_flight"] == 0
    # Every ack of the finished window is recorded in the spool before we look.
    wait_for(lambda: rig.watermark() == fwd.state()["acked_seq"], what="the acks recorded")
    held = rig.watermark()
    rows = rig.emu.table_stats()["rows"]
    time.sleep(0.5)
    assert rig.watermark() == held and rig.emu.table_stats()["rows"] == rows  # nothing sent while paused
    assert held < res.last_seq
    assert rig.emu.table_stats()["duplicates"] == 0  # the window was finished, not abandoned
    more = rig.append(100)  # collection goes on
    fwd.resume()
    rig.wait_delivered(more.last_seq)
    _assert_complete(rig, res.first_seq, more.last_seq)
    assert rig.emu.table_stats()["duplicates"] == 0
