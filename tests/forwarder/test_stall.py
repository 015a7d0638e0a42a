"""An egress that stops acking shows as ``stalled`` within max(5 x p99 RTT, 3 s) of the last ack, not at ack_timeout.

Real SDK against the emulator: 700 ms acks (so the RTT-derived term, 5 x ~0.7 s, is the
larger), then the emulator's ``never_ack`` fault. The streams stay up (the SDK has not
failed them); the cut is dated from the last ack; acks resuming end the stall.
"""

from __future__ import annotations

import time

from edge.forward.pace import STALL_MIN_S, STALL_RTTS
from tests.forwarder.conftest import wait_for

LATENCY_S = 0.7
ACK_TIMEOUT_S = 60.0  # the SDK's lack-of-ack timeout: far beyond the stall bound


def test_a_cut_egress_is_stalled_within_five_rtts_of_the_last_ack_streams_kept(rig):
    rig.emu.set_faults({"ack_latency_ms": LATENCY_S * 1000})
    fwd = rig.start(ack_timeout=ACK_TIMEOUT_S)
    for _ in range(3):  # a few round trips measured
        rig.wait_delivered(rig.append(200).last_seq)
    before = fwd.state()
    p99 = fwd.pace.rtt_p99()
    assert p99 is not None and p99 >= LATENCY_S * 0.9
    expected = max(STALL_RTTS * p99, STALL_MIN_S)
    # Allowance for a loaded machine: the forwarder looks at least every 0.25 s.
    bound = max(STALL_RTTS * LATENCY_S * 1.5, STALL_MIN_S) + 1.5

    rig.emu.set_faults({"never_ack": True})
    res = rig.append(200)
    st = wait_for(lambda: (s := fwd.state())["state"] == "stalled" and s, timeout=bound + 5, what="stalled")
    detected = time.time()
    last_ack = before["last_ack_ts"]
    assert st["last_ack_ts"] == last_ack and st["stalled_since"] >= last_ack
    assert expected * 0.95 <= detected - st["stalled_since"] <= bound, (detected - st["stalled_since"], expected, bound)
    assert detected - last_ack < ACK_TIMEOUT_S / 4
    # Not torn down: no failure, no new stream; the cut is open and dated from the stall's start.
    assert st["failures_total"] == 0 and st["stream_creations_total"] == before["stream_creations_total"]
    cut = st["egress_cuts"][-1]
    assert cut["open"] and cut["started_ts"] == st["stalled_since"] and st["egress_cuts_total"] == 1

    rig.emu.clear_faults()
    more = rig.append(200)  # the next ack is cumulative: it covers the stalled batch too
    rig.wait_delivered(more.last_seq)
    st = wait_for(lambda: (s := fwd.state())["state"] in ("streaming", "idle") and s, what="acks again")
    assert st["stalled_since"] is None and st["failures_total"] == 0
    assert st["egress_cuts"][-1]["recovered_ts"] is not None
    led = rig.ledger()
    assert led["max_seq"] == more.last_seq and led["missing_count"] == 0 and res.last_seq < more.last_seq
