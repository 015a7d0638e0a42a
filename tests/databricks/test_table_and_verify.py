"""`edge table create` and `edge verify` through databricks-sdk against the workspace stand-in."""

from __future__ import annotations

import json

from zerobus.sdk.shared import TableProperties
from zerobus.sdk.sync import ZerobusSdk

from edge.encode import appliance_prefix, encode_loss_marker, encode_reading, frame
from edge.pb.reading_pb2 import Reading
from simulators.kit.workspace import Workspace

from .conftest import edge, write_config


def push(emu, appliance: str, seqs: list[int], markers: dict[int, int] | None = None) -> None:
    """Land records with exactly these seqs (a marker at seq s covers s..markers[s])."""
    prefix = appliance_prefix(appliance)
    records = []
    for s in seqs:
        if markers and s in markers:
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
    # What explains 61..69 is listed; its reason when the table answers the detail columns (the
    # stand-in's view has none of them: then details_error says why the listing is short).
    assert [(m["from_seq"], m["to_seq"]) for m in mine["explained"]] == [(60, 69)]
    assert mine["explained"][0]["reason"] == "drop_oldest" or mine["details_error"]
    assert mine["duplicates"] == 10 and mine["rows"] == len(seqs) + 10


def test_verify_clean_range_exits_0_and_sees_missing_ends(tmp_path, emu, workspace):
    push(emu, "plant-dbx", list(range(5, 21)))
    cfg = write_config(tmp_path / "edge.yaml", endpoint=emu.grpc_endpoint, workspace_url=workspace.url,
                       warehouse_id=workspace.warehouse_id)
    assert edge("verify", "--config", str(cfg), "--from-seq", "5", "--to-seq", "20").returncode == 0
    r = edge("verify", "--config", str(cfg), "--from-seq", "1", "--to-seq", "25")
    rep = json.loads(r.stdout)["tables"]["main.edge.readings"]["appliances"]["plant-dbx"]
    assert r.returncode == 1 and rep["unexplained_missing"] == [[1, 4], [21, 25]]
