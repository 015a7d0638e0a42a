"""`edge spool inspect` and `edge spool export` on a real spool file, through the CLI."""

import base64
import csv
import io
import json

import pytest

from edge.cli import main
from edge.spool import export

from .conftest import items


@pytest.fixture
def config(tmp_path, spool_path):
    cfg = tmp_path / "edge.yaml"
    cfg.write_text(
        f"appliance_id: app-1\ndata_dir: {tmp_path}\n"
        f"spool:\n  path: {spool_path}\n  max_bytes: 1GiB\n"
        "zerobus:\n  endpoint: http://127.0.0.1:50051\n  workspace_url: http://127.0.0.1:8090\n"
        "  table: main.edge.readings\n  client_id: edge\n  client_secret: emulator\n"
        "sources:\n  - name: demo\n    type: synthetic\n"
    )
    return cfg


@pytest.fixture
def filled(open_spool):
    s = open_spool()
    s.append(items(10))
    s.dead_letter(4, "schema mismatch: column x")
    s.quarantine("mqtt-1", "not json", b"\xff\x00{bad", {"topic": "plant/a"})
    s.quarantine("http", "too deep", "[" * 50, None)
    s.close()


def test_inspect_names_tables_counts_and_schema(filled, config, capsys):
    assert main(["spool", "inspect", "--config", str(config)]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["schema_version"] >= 4 and got["journal_mode"] == "wal"
    assert got["tables"]["readings"]["rows"] == 10  # 9 readings + the dead letter's marker
    assert got["tables"]["quarantine"]["rows"] == 2 and got["tables"]["dead_letters"]["rows"] == 1
    assert got["tables"]["quarantine"]["columns"]["raw"] == "BLOB"


def test_export_quarantine_as_json_lines_keeps_bytes(filled, config, capsys):
    assert main(["spool", "export", "quarantine", "--config", str(config)]) == 0
    out = capsys.readouterr()
    lines = [json.loads(x) for x in out.out.splitlines()]
    assert [x["reason"] for x in lines] == ["not json", "too deep"]  # oldest first
    assert base64.b64decode(lines[0]["raw"]["encoded"]) == b"\xff\x00{bad" and lines[0]["raw"]["$base64"]
    assert json.loads(lines[0]["meta_json"]) == {"topic": "plant/a"}
    assert "exported 2 rows" in out.err
    assert main(["spool", "export", "quarantine", "--after", str(lines[0]["id"]), "--config", str(config)]) == 0
    assert [json.loads(x)["reason"] for x in capsys.readouterr().out.splitlines()] == ["too deep"]


def test_export_dead_letters_as_csv_to_a_file(filled, config, tmp_path):
    target = tmp_path / "dl.csv"
    assert main(["spool", "export", "dead-letters", "--format", "csv", "-o", str(target), "--config", str(config)]) == 0
    (row,) = list(csv.DictReader(io.StringIO(target.read_text())))
    assert row["seq"] == "4" and row["reason"] == "schema mismatch: column x"
    assert base64.b64decode(row["body"]) == items(10)[3][1]


def test_export_refuses_readings_and_a_missing_spool(config, tmp_path, capsys):
    with pytest.raises(Exception, match="cannot export 'readings'"):
        list(export.rows(tmp_path / "nothing.db", "readings"))
    assert main(["spool", "export", "quarantine", "--config", str(config)]) == 2  # no spool yet
    assert "no spool" in capsys.readouterr().err
