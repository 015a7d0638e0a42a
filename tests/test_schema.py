"""The reading message, the shipped DDL and the generated code agree."""

import subprocess
import sys
from pathlib import Path

from edge import schema
from edge.encode import appliance_prefix, decode, encode_loss_marker, encode_reading, frame, varint
from edge.pb.reading_pb2 import Reading

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_ddl_is_what_the_proto_renders():
    assert (ROOT / "proto" / "readings.sql").read_text() == schema.ddl()


def test_key_columns_are_not_null_and_the_rest_nullable():
    cols = {n: (t, req) for n, t, req in schema.columns()}
    assert cols["appliance_id"] == ("STRING", True)
    assert cols["seq"] == ("BIGINT", True)
    assert cols["kind"] == ("STRING", True)
    assert cols["source_ts"] == ("TIMESTAMP", False)
    assert cols["value_json"] == ("VARIANT", False)
    assert sum(req for _, _, req in schema.columns()) == 3


def test_ddl_names_the_table():
    assert "CREATE TABLE IF NOT EXISTS main.plant.bronze (" in schema.ddl("main.plant.bronze")


def test_generated_code_matches_the_proto(tmp_path):
    (tmp_path / "edge" / "pb").mkdir(parents=True)
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'proto'}", f"--python_out={tmp_path / 'edge' / 'pb'}",
         str(ROOT / "proto" / "reading.proto")],
        check=True,
    )
    fresh = (tmp_path / "edge" / "pb" / "reading_pb2.py").read_text()
    assert fresh == (ROOT / "edge" / "pb" / "reading_pb2.py").read_text(), "run ops/gen_proto.sh"


def test_framed_record_parses_like_a_whole_message():
    body = encode_reading(source="s1", protocol="opcua", point="ns=2;s=T1", value=21.5, quality="GOOD",
                          status_code=0, source_ts=1_700_000_000_000_000, collected_ts=1_700_000_000_000_100,
                          unit="degC", data_type="Double")
    rec = frame(appliance_prefix("plant-7"), 2**40 + 3, body)
    whole = Reading(appliance_id="plant-7", seq=2**40 + 3, kind="reading", source="s1", protocol="opcua",
                    point="ns=2;s=T1", value_double=21.5, quality="GOOD", status_code=0,
                    source_ts=1_700_000_000_000_000, collected_ts=1_700_000_000_000_100, unit="degC",
                    data_type="Double")
    assert decode(rec) == whole
    assert decode(rec).IsInitialized()


def test_values_land_in_their_typed_column():
    def parsed(v):
        return decode(frame(appliance_prefix("a"), 1, encode_reading(source="s", protocol="p", point="x", value=v)))

    assert parsed(True).value_bool is True and not parsed(True).HasField("value_int")
    assert parsed(7).value_int == 7
    assert parsed(2.5).value_double == 2.5
    assert parsed("open").value_string == "open"
    assert parsed([1, 2]).value_json == "[1,2]"
    assert parsed({"a": 1}).value_json == '{"a":1}'
    assert parsed(float("nan")).value_json == '"nan"'
    assert parsed(2**70).value_json == str(2**70)
    assert not parsed(None).HasField("value_double")


def test_loss_marker_body():
    m = decode(frame(appliance_prefix("a"), 10, encode_loss_marker(10, 19, "drop_oldest")))
    assert (m.kind, m.seq, m.loss_from_seq, m.loss_to_seq, m.loss_reason) == ("loss", 10, 10, 19, "drop_oldest")


def test_varint_matches_protobuf():
    for n in (0, 1, 127, 128, 300, 2**31, 2**63 - 1, -1):
        assert Reading(appliance_id="", seq=n, kind="").SerializeToString() == b"\x0a\x00" + b"\x10" + varint(n) + b"\x1a\x00"
