"""`edge spool quarantine` shows a quarantined payload as text when it is printable UTF-8, as hex otherwise."""

import json

from edge.cli import main
from edge.spool import Spool


def test_quarantine_listing_shows_text_payloads_as_text(tmp_path, capsys):
    spool_path = tmp_path / "spool.db"
    s = Spool.open(spool_path, appliance_id="app-1", max_bytes=1 << 30, min_free_bytes=0)
    s.quarantine("mqtt1", "metadata field 'unit' is not a string", '{"unit": 5, "name": "Zone 1 °C"}\n'.encode(), {"topic": "a"})
    s.quarantine("mqtt1", "payload is not valid UTF-8 (byte 0)", b"\xff\xfe\x00garbage", {"topic": "b"})
    s.quarantine("mqtt1", "not a number", b"12\x0034", {"topic": "c"})  # valid UTF-8, but a NUL is not printable
    s.close()
    cfg = tmp_path / "edge.yaml"
    cfg.write_text(
        f"appliance_id: app-1\ndata_dir: {tmp_path}\nspool:\n  path: {spool_path}\n"
        "zerobus:\n  endpoint: http://127.0.0.1:50051\n  workspace_url: http://127.0.0.1:8090\n"
        "  table: main.edge.readings\n  client_id: edge\n  client_secret: emulator\n"
        "sources:\n  - name: demo\n    type: synthetic\n")
    assert main(["spool", "quarantine", "--config", str(cfg)]) == 0
    rows = {json.loads(r["meta"])["topic"] if isinstance(r["meta"], str) else r["meta"]["topic"]: r
            for r in json.loads(capsys.readouterr().out)}
    assert rows["a"]["raw"] == '{"unit": 5, "name": "Zone 1 °C"}\n' and rows["a"]["raw_encoding"] == "utf-8"
    assert rows["b"]["raw"] == "fffe0067617262616765" and rows["b"]["raw_encoding"] == "hex"
    assert rows["c"]["raw"] == "3132003334" and rows["c"]["raw_encoding"] == "hex"
