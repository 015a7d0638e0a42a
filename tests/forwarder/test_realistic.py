"""The forwarder against the emulator's realistic behaviours (ack latency, quotas, rotation), real SDK.

Correctness only: nothing lost, the spool's acks strictly in order, rotations with no
duplicate, throttling without an outage. The rates are measured by ops/bench_drain.py.
"""

from __future__ import annotations

import time

import pytest

from edge.forward import Forwarder
from simulators.kit.emulator import Emulator
from tests.forwarder.conftest import APP, Rig, make_cfg
from tests.forwarder.test_watermark import RecordingWriter

WINDOW_ROWS = 4 * 200  # max_inflight_batches x batch_max_records of make_cfg, per stream


def _run(rig: Rig, n: int, timeout: float = 90.0, open_streams: int | None = None, **kw) -> tuple[dict, list[int]]:
    res = rig.append(n)
    writer = RecordingWriter(rig.writer)
    rig.fwd = Forwarder(make_cfg(rig.emu, **kw), appliance_id=APP, spool_path=str(rig.path), writer=writer)
    if open_streams:
        rig.fwd.pace.streams = open_streams
    rig.writer.on_commit = rig.fwd.notify
    rig.fwd.start()
    rig.wait_delivered(res.last_seq, timeout=timeout)
    led = rig.ledger()
    assert (led["min_seq"], led["max_seq"], led["missing_count"]) == (res.first_seq, res.last_seq, 0), led
    assert writer.acks == sorted(set(writer.acks)) and writer.acks[-1] == res.last_seq  # in order, to the end
    return rig.fwd.state(), writer.acks


def _service(emu) -> dict:
    return emu.stats()["service"]


@pytest.mark.parametrize("streams", [1, 3])
def test_server_rotation_is_graceful_no_duplicate_no_outage(rig, streams):
    rig.emu.set_faults({"ack_latency_ms": 20, "stream_lifetime_s": 1, "close_grace_ms": 1500})
    first = rig.append(5000)
    writer = RecordingWriter(rig.writer)
    fwd = rig.fwd = Forwarder(make_cfg(rig.emu, streams=streams, ack_timeout=10), appliance_id=APP,
                              spool_path=str(rig.path), writer=writer)
    fwd.pace.streams = streams
    rig.writer.on_commit = fwd.notify
    fwd.start()
    last = first
    deadline = time.monotonic() + 60
    while _service(rig.emu)["rotations"] < streams + 1:  # readings keep coming while the server rotates streams
        assert time.monotonic() < deadline, _service(rig.emu)
        last = rig.append(500)
        rig.wait_delivered(last.last_seq - 1000)
    rig.wait_delivered(last.last_seq)
    led = rig.ledger()
    assert (led["min_seq"], led["max_seq"], led["missing_count"]) == (first.first_seq, last.last_seq, 0), led
    assert writer.acks == sorted(set(writer.acks))
    st = fwd.state()
    # Rotated (by the SDK itself, or by us replacing the stream) and nothing the service had
    # acked was sent again.
    assert rig.emu.table_stats()["streams_opened"] >= streams + 1, (rig.emu.table_stats(), st)
    assert rig.emu.table_stats()["duplicates"] == 0
    assert st["egress_cuts_total"] == 0


def test_quota_refusal_is_backed_off_and_more_streams_open(rig):
    rig.emu.set_faults({"quota_records_per_s": 4000, "quota_action": "reject"})
    st, _ = _run(rig, 12_000, streams=3)
    assert _service(rig.emu)["quota_rejections"] >= 1
    assert st["throttled_total"] >= 1 and st["stream_creations_total"] >= 2
    assert st["drain"]["streams_open"] >= 2 or st["state"] == "idle"
    assert st["egress_cuts_total"] == 0  # throttling is no outage
    assert rig.emu.table_stats()["duplicates"] <= 3 * WINDOW_ROWS


def test_quota_by_flow_control_delivers_everything_once(rig):
    rig.emu.set_faults({"quota_records_per_s": 5000})
    st, _ = _run(rig, 15_000, streams=4)
    assert _service(rig.emu)["throttled_batches"] >= 1
    assert rig.emu.table_stats()["duplicates"] == 0
    assert st["failures_total"] == 0
    assert st["drain"]["binding"] == "caught-up" and st["drain"]["streams_open"] >= 1


def test_jittered_ack_latency_delivers_everything_once(rig):
    rig.emu.set_faults({"ack_latency_ms": 80, "ack_jitter_ms": 120})
    st, _ = _run(rig, 20_000, streams=2, ack_timeout=10)
    assert rig.emu.table_stats()["duplicates"] == 0 and st["failures_total"] == 0
    assert st["drain"]["min_rtt_ms"] is not None and st["drain"]["min_rtt_ms"] > 0


def test_realistic_profile(tmp_path):
    with Emulator(extra_args=["--profile", "realistic", "--stream-lifetime-s", "2", "--close-grace-ms", "2000"]) as emu:
        rig = Rig(tmp_path, emu)
        try:
            st, _ = _run(rig, 30_000, streams=4, ack_timeout=15, max_inflight_batches=16)
            assert emu.table_stats()["duplicates"] == 0
            assert st["egress_cuts_total"] == 0
        finally:
            rig.close()
