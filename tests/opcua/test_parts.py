"""Pure parts: checkpoint file, queue-size default, browse-path parsing and point names."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest
from asyncua import ua

from edge.configtypes import build
from edge.sources.opcua.config import GroupConfig
from edge.sources.opcua.history import BackfillReport, Checkpoint, read_gap
from edge.sources.opcua.resolve import _display, _split_path


def test_checkpoint_round_trip_only_moves_forward(tmp_path):
    c = Checkpoint(tmp_path / "x.json", "opc.tcp://a:1")
    c.advance("p", 10)
    c.advance("p", 5)  # an older source time never moves the checkpoint back
    c.write(c.snapshot())
    assert not c.dirty
    d = Checkpoint(tmp_path / "x.json", "opc.tcp://a:1")
    d.load()
    assert d.points == {"p": 10}
    assert not (tmp_path / "x.tmp").exists()


def test_checkpoint_of_another_endpoint_or_corrupt_is_ignored(tmp_path, caplog):
    (tmp_path / "x.json").write_text(json.dumps({"endpoint": "opc.tcp://other:1", "points": {"p": 1}}))
    c = Checkpoint(tmp_path / "x.json", "opc.tcp://a:1")
    c.load()
    assert c.points == {}
    (tmp_path / "x.json").write_text("{not json")
    c.load()
    assert c.points == {} and "ignoring unreadable" in caplog.text


@pytest.mark.parametrize("pub,samp,q,expected", [
    ("1s", "250ms", None, 8), ("1s", "0", None, 10), ("100ms", "1s", None, 2), ("1h", "10ms", None, 1000),
    ("1s", "250ms", 3, 3),
])
def test_queue_size_default_holds_one_publishing_interval_twice(pub, samp, q, expected):
    g = build(GroupConfig, {"publishing_interval": pub, "sampling_interval": samp, "queue_size": q, "nodes": ["ns=2;s=a"]})
    assert g.effective_queue_size() == expected


def test_browse_path_parsing_and_point_names():
    assert _split_path("Objects/2:Plant/Line1") == [(None, "Objects"), (2, "Plant"), (None, "Line1")]
    assert _split_path("/Plant//x:y/") == [(None, "Plant"), (None, "x:y")]
    assert _display("Objects/2:Plant/3:Line1/Temp") == "Plant/Line1/Temp"
    assert _display("Plant/Line1") == "Plant/Line1"


def test_backfill_summary_names_open_gaps():
    r = BackfillReport(nodes=3, values=12, new=10, unsupported=[("p", "BadHistoryOperationUnsupported")], clamped=["q"])
    s = r.summary()
    assert "back-filled 10 values for 3 nodes" in s and "no history for 1 nodes (BadHistoryOperationUnsupported)" in s
    assert "2 values the server returned were already held" in s
    assert "down longer than max_gap" in s


@pytest.mark.parametrize("refusal, unsupported", [(ua.uaerrors.BadServiceUnsupported, True),
                                                   (ua.uaerrors.BadTimeout, False)])
def test_a_server_refusing_the_history_service_has_no_history_it_did_not_fail(refusal, unsupported):
    # open62541 built without history answers the whole HistoryRead service with BadServiceUnsupported.
    async def history_read(params):
        raise refusal()

    client = SimpleNamespace(uaclient=SimpleNamespace(history_read=history_read))
    wanted = [(f"p{i}", ua.NodeId(i, 2), 1_700_000_000_000_000) for i in range(3)]

    async def on_values(point, dvs):
        raise AssertionError("no values expected")

    rep = asyncio.run(read_gap(client, wanted, now_us=1_700_000_060_000_000, max_gap_s=3600, max_values=0,
                               nodes_per_request=2, on_values=on_values))
    if unsupported:
        assert sorted(rep.unsupported) == [(f"p{i}", "BadServiceUnsupported") for i in range(3)]
        assert rep.failed == [] and rep.error is None
    else:
        assert sorted(rep.failed) == ["p0", "p1", "p2"] and rep.unsupported == []
