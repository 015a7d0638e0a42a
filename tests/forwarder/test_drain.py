"""Happy path and multi-stream ordering against the real SDK and the emulator."""

import pytest


def test_drains_everything_in_order_each_seq_once(rig):
    res = rig.append(1000)
    fwd = rig.start()
    rig.wait_delivered(res.last_seq)
    rig.wait_state("idle")
    table = rig.emu.table_stats()
    led = rig.ledger()
    assert table["rows"] == 1000 and table["duplicates"] == 0
    assert (led["min_seq"], led["max_seq"]) == (res.first_seq, res.last_seq)
    assert led["missing_count"] == 0
    st = fwd.state()
    assert st["acked_total"] == 1000 and st["sent_total"] == 1000 and st["resent_total"] == 0
    assert st["last_ack_seq"] == res.last_seq
    assert st["batches_in_flight"] == 0
    # 1,000 rows are more than one stream's window (4 x 200): every allowed stream opened at once, once.
    assert st["stream_creations_total"] == fwd.cfg.streams
    # Rows arrive while idle: forwarded without a restart.
    more = rig.append(50)
    rig.wait_delivered(more.last_seq)
    assert rig.emu.table_stats()["rows"] == 1050
    rows = rig.emu.rows(appliance_id="fwd-test", from_seq=res.first_seq, limit=5)
    assert [r["seq"] for r in rows] == list(range(res.first_seq, res.first_seq + 5))


@pytest.mark.parametrize("streams", [2, 4])
def test_multiple_streams_deliver_everything_once(rig, streams):
    res = rig.append(3000)
    fwd = rig.start(streams=streams, open_streams=streams, batch_max_records=100)
    rig.wait_delivered(res.last_seq)
    led = rig.ledger()
    assert rig.emu.table_stats()["duplicates"] == 0
    assert (led["min_seq"], led["max_seq"], led["missing_count"]) == (res.first_seq, res.last_seq, 0)
    st = fwd.state()
    assert st["stream_creations_total"] == streams
    assert st["acked_total"] == 3000

