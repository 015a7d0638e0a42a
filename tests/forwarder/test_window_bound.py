"""The duplicate bound: what one session can have in flight, so what a failure can make arrive twice.

Per stream at most ``max_inflight_batches`` calls of at most ``batch_max_records``; in all at
most ``streams`` x that, and no more bytes than ``max_inflight_bytes`` plus one batch (the
window is checked before each batch is added). The emulator stops acking, so everything the
forwarder will send without an ack is sent and counted; a restart then resends it (the
duplicates are exactly that count, all within the bound). DURABILITY.md cites this test.
"""

from __future__ import annotations

import pytest

from edge.spool import SpoolReader
from tests.forwarder.conftest import wait_for

STREAMS, INFLIGHT, BATCH = 3, 4, 200


@pytest.mark.parametrize("max_inflight_bytes", [64 << 20, 64 << 10])
def test_one_session_sends_at_most_streams_x_window_and_the_byte_bound(rig, max_inflight_bytes):
    res = rig.append(6000)
    rig.emu.set_faults({"never_ack": True})
    fwd = rig.start(streams=STREAMS, max_inflight_batches=INFLIGHT, batch_max_records=BATCH,
                    max_inflight_bytes=max_inflight_bytes, ack_timeout=60)
    wait_for(lambda: fwd.state()["state"] == "stalled", what="stalled: the window is full and unacked")
    sent = rig.emu.table_stats()["rows"]
    with SpoolReader(rig.path) as r:
        framed = fwd.framer.frame_rows(r.peek(0, BATCH))
    smallest, batch_bytes = min(map(len, framed)), sum(map(len, framed))
    by_calls = STREAMS * INFLIGHT * BATCH
    by_bytes = (max_inflight_bytes + batch_bytes) // smallest
    assert sent <= min(by_calls, by_bytes), (sent, by_calls, by_bytes)
    if max_inflight_bytes > by_calls * batch_bytes:
        assert sent == by_calls  # every stream filled its calls: the bound is reached, not just respected
    else:
        assert sent < by_calls  # the byte window bound first
    assert fwd.stop(10)
    rig.emu.clear_faults()
    fwd = rig.start(streams=STREAMS, max_inflight_batches=INFLIGHT, batch_max_records=BATCH,
                    max_inflight_bytes=max_inflight_bytes)
    rig.wait_delivered(res.last_seq, timeout=60)
    led = rig.ledger()
    assert (led["min_seq"], led["max_seq"], led["missing_count"]) == (res.first_seq, res.last_seq, 0)
    assert rig.emu.table_stats()["duplicates"] == sent  # what was in flight, resent once, nothing more
