"""A backlog larger than one stream's window opens every allowed stream at once; caught up, one stays.

Real SDK against the emulator with 150 ms acks (no quota: acks never queue, so the old
probe-by-probe ramp never opened a second stream here).
"""

from __future__ import annotations

from tests.forwarder.conftest import wait_for
from tests.forwarder.test_realistic import _run


def test_a_backlog_opens_all_streams_at_once_and_caught_up_closes_all_but_one(rig):
    rig.emu.set_faults({"ack_latency_ms": 150})
    st, acks = _run(rig, 20_000, streams=4, ack_timeout=10)  # 25 x one stream's window (4 x 200 rows)
    assert st["stream_creations_total"] == 4, st
    assert rig.emu.table_stats()["streams_opened"] == 4
    assert rig.emu.table_stats()["duplicates"] == 0 and st["failures_total"] == 0
    wait_for(lambda: rig.fwd.state()["state"] == "idle", what="caught up")
    assert wait_for(lambda: rig.fwd.pace.streams_open == 1, what="back to one stream")
    # A trickle (less than one window) afterwards stays on the one stream.
    res = rig.append(100)
    rig.wait_delivered(res.last_seq)
    assert rig.fwd.state()["stream_creations_total"] == 4 and rig.fwd.pace.streams_open == 1
