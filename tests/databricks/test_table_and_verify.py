"""`edge table create` and `edge verify` through databricks-sdk against the workspace stand-in."""

from __future__ import annotations

import json

from zerobus.sdk.shared import TableProperties
from zerobus.sdk.sync import ZerobusSdk

from edge.encode import appliance_prefix, encode_gap_marker, encode_loss_marker, encode_reading, frame
from edge.pb.reading_pb2 import Reading
from edge.schema import columns
from simulators.kit.workspace import Workspace
from tests.forwarder.conftest import APP, BASE_TS, Rig

from .conftest import edge, write_config


def push(emu, appliance: str, seqs: list[int], markers: dict[int, int] | None = None,
         bodies: dict[int, bytes] | None = None) -> None:
    """Land records with exactly these seqs (a marker at seq s covers s..markers[s]; bodies[s] is landed as is)."""
    prefix = appliance_prefix(appliance)
    records = []
    for s in seqs:
        if bodies and s in bodies:
            body = bodies[s]
        elif markers and s in markers:
            body = encode_loss_marker(s, markers[s], "drop_oldest")
        else:
            body = encode_reading(source="t", protocol="synthetic", point=f"p{s % 5}", value=float(s))
        records.append(frame(prefix, s, body))
    sdk = ZerobusSdk(emu.grpc_endpoint, emu.workspace_url)
    stream = sdk.create_stream(client_id=emu.client_id, client_secret=emu.client_secret,
                               table_properties=TableProperties(emu.table, Reading.DESCRIPTOR))
    stream.wait_for_offset(stream.ingest_records_offset(records))
    stream.close()


def test_table_create_runs_ddl_and_grants(tmp_path, emu):
    with Workspace(emu, tables=()) as ws:
        cfg = write_config(tmp_path / "edge.yaml", endpoint=emu.grpc_endpoint, workspace_url=ws.url,
                           warehouse_id=ws.warehouse_id)
        r = edge("table", "create", "--config", str(cfg), "--principal", "sp-1234")
        assert r.returncode == 0, r.stderr
        assert "CREATE TABLE IF NOT EXISTS main.edge.readings" in r.stdout
        assert "GRANT SELECT, MODIFY ON TABLE main.edge.readings TO `sp-1234`" in r.stdout
        got = ws.statements()
        assert any(s["statement"].startswith("CREATE TABLE") for s in got["statements"])
        assert len(got["grants"]) == 3
        # The table it made is exactly what the appliance writes.
        d = edge("doctor", "--config", str(cfg), "--json", "--no-stream")
        assert d.returncode == 0, d.stdout


def test_table_create_needs_a_warehouse(tmp_path, emu, workspace):
    cfg = write_config(tmp_path / "edge.yaml", endpoint=emu.grpc_endpoint, workspace_url=workspace.url)
    r = edge("table", "create", "--config", str(cfg))
    assert r.returncode == 2 and "zerobus.warehouse_id" in r.stderr


def test_table_create_wrong_warehouse_is_an_error(tmp_path, emu, workspace):
    cfg = write_config(tmp_path / "edge.yaml", endpoint=emu.grpc_endpoint, workspace_url=workspace.url,
                       warehouse_id="nope")
    r = edge("table", "create", "--config", str(cfg))
    assert r.returncode == 1 and "statement execution" in r.stderr


def test_the_workspace_table_has_its_ddls_columns_read_from_the_landed_records(emu, workspace):
    start = 1_700_000_000_000_000
    gap = encode_gap_marker(source="plc", protocol="opcua", point="ns=2;s=Temp", start_us=start,
                            end_us=start + 30_000_000, reason="history_empty")
    push(emu, "plant-dbx", [1, 2, 3], markers={2: 2}, bodies={3: gap})
    got = workspace.sql("SELECT * FROM main.edge.readings ORDER BY seq")
    assert got["status"]["state"] == "SUCCEEDED", got
    names = [c["name"] for c in got["manifest"]["schema"]["columns"]]
    assert names == [name for name, _type, _required in columns()]
    reading, marker, gap_row = (dict(zip(names, row)) for row in got["result"]["data_array"])
    assert (reading["kind"], reading["source"], reading["point"], reading["value_double"]) == ("reading", "t", "p1", "1.0")
    assert reading["loss_reason"] is None and reading["value_json"] is None
    assert (marker["kind"], marker["loss_from_seq"], marker["loss_to_seq"], marker["loss_reason"]) == \
        ("loss", "2", "2", "drop_oldest")
    assert (gap_row["kind"], gap_row["source"], gap_row["point"], gap_row["loss_reason"]) == \
        ("gap", "plc", "ns=2;s=Temp", "history_empty")
    assert json.loads(gap_row["value_json"]) == {"from_us": start, "to_us": start + 30_000_000, "seconds": 30.0}
    assert gap_row["source_ts"] == "2023-11-14T22:13:20.000000Z"  # a TIMESTAMP, from the wire's microseconds
    # A table made with fewer columns has only those.
    assert workspace.sql("CREATE TABLE main.edge.narrow (appliance_id STRING NOT NULL, seq BIGINT NOT NULL, "
                         "kind STRING NOT NULL)")["status"]["state"] == "SUCCEEDED"
    narrow = workspace.sql("SELECT loss_reason FROM main.edge.narrow")
    assert narrow["status"]["state"] == "FAILED" and "loss_reason" in narrow["status"]["error"]["message"]


def test_verify_matches_the_emulators_accounting(tmp_path, emu, workspace):
    seqs = [s for s in range(1, 101) if not 40 <= s <= 49 and not 61 <= s <= 69]
    push(emu, "plant-dbx", seqs + list(range(1, 11)), markers={60: 69})
    push(emu, "other-appliance", [1, 2, 3])
    cfg = write_config(tmp_path / "edge.yaml", endpoint=emu.grpc_endpoint, workspace_url=workspace.url,
                       warehouse_id=workspace.warehouse_id)
    r = edge("verify", "--config", str(cfg))
    assert r.returncode == 1, r.stdout + r.stderr  # 40..49 is an unexplained gap
    mine = json.loads(r.stdout)["tables"]["main.edge.readings"]["appliances"]["plant-dbx"]
    theirs = emu.table_stats()["appliances"]["plant-dbx"]
    for key in ("min_seq", "max_seq", "missing", "unexplained_missing"):
        assert mine[key] == theirs[key], key
    assert mine["missing"] == [[40, 49], [61, 69]]
    assert mine["unexplained_missing"] == [[40, 49]]
    # What explains 61..69 is listed with its reason, read from the table's loss_reason column.
    assert mine["explained"] == [{"from_seq": 60, "to_seq": 69, "seqs": 10, "reason": "drop_oldest"}]
    assert mine["details_error"] is None and mine["source_gaps_count"] == 0
    assert mine["duplicates"] == 10 and mine["rows"] == len(seqs) + 10


def test_verify_clean_range_exits_0_and_sees_missing_ends(tmp_path, emu, workspace):
    push(emu, "plant-dbx", list(range(5, 21)))
    cfg = write_config(tmp_path / "edge.yaml", endpoint=emu.grpc_endpoint, workspace_url=workspace.url,
                       warehouse_id=workspace.warehouse_id)
    assert edge("verify", "--config", str(cfg), "--from-seq", "5", "--to-seq", "20").returncode == 0
    r = edge("verify", "--config", str(cfg), "--from-seq", "1", "--to-seq", "25")
    rep = json.loads(r.stdout)["tables"]["main.edge.readings"]["appliances"]["plant-dbx"]
    assert r.returncode == 1 and rep["unexplained_missing"] == [[1, 4], [21, 25]]


def test_verify_names_what_an_appliance_lost_and_why(tmp_path, emu, workspace):
    """The appliance's own spool writes the loss markers (``drop_oldest`` when it is full before the
    forwarder runs, ``dead_letter`` for a record ZeroBus rejects), a source's gap row is spooled as the
    OPC-UA collector spools it, the forwarder lands them all; ``edge verify`` through the workspace
    lists each marker with its reason and the gap row, in its JSON and its stderr summary."""
    rig = Rig(tmp_path, emu, max_bytes=300_000, when_full="drop_oldest")
    cfg = write_config(tmp_path / "edge.yaml", endpoint=emu.grpc_endpoint, workspace_url=workspace.url,
                       warehouse_id=workspace.warehouse_id)  # its spool is the rig's
    try:
        first = rig.append(500)
        for _ in range(9):  # more than the budget holds: the oldest readings make way
            rig.append(500)
        start, end = BASE_TS, BASE_TS + 90_000_000
        gap = rig.writer.submit([(BASE_TS, encode_gap_marker(
            source="plc", protocol="opcua", point="ns=2;s=Temp", start_us=start, end_us=end,
            reason="history_empty"))]).result(30)
        bad_index = rig.next_index() + 3
        last = rig.append(10, bad={bad_index})
        bad_seq = last.first_seq + 3
        export = edge("spool", "export", "loss-markers", "--config", str(cfg))
        assert export.returncode == 0, export.stderr
        dropped = [json.loads(line) for line in export.stdout.splitlines()]
        assert dropped and {m["reason"] for m in dropped} == {"drop_oldest"}
        emu.set_faults({"reject_records": {"point": "bad/.*"}})
        rig.start()
        rig.wait_delivered(last.last_seq, timeout=60)
    finally:
        rig.close()
    r = edge("verify", "--config", str(cfg), "--appliance-id", APP)
    assert r.returncode == 0, r.stdout + r.stderr  # every missing seq is explained
    rep = json.loads(r.stdout)["tables"]["main.edge.readings"]["appliances"][APP]
    assert rep["details_error"] is None
    want = [{"from_seq": m["seq"], "to_seq": m["to_seq"], "seqs": m["to_seq"] - m["seq"] + 1, "reason": "drop_oldest"}
            for m in dropped] + [{"from_seq": bad_seq, "to_seq": bad_seq, "seqs": 1, "reason": "dead_letter"}]
    assert rep["explained"] == want
    assert dropped[0]["seq"] == first.first_seq
    drops = sum(m["seqs"] for m in want[:-1])
    assert rep["explained_by_reason"] == {"drop_oldest": drops, "dead_letter": 1}
    assert rep["source_gaps"] == [{"seq": gap.first_seq, "source": "plc", "point": "ns=2;s=Temp",
                                   "reason": "history_empty", "from_us": start, "to_us": end, "seconds": 90.0}]
    assert rep["source_gaps_count"] == 1 and rep["source_gaps_by_reason"] == {"history_empty": 1}
    summary = r.stderr
    assert f"loss markers: {len(want)} (seqs by reason: dead_letter 1, drop_oldest {drops})" in summary, summary
    assert "source gaps: 1 (by reason: history_empty 1)" in summary, summary
    assert "details unavailable" not in summary
