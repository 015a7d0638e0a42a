"""Golden cases for the pure decoders, one folder a case, like Telegraf's plugins/inputs/<name>/testcases:
``testcases/<proto>/<case>/input.yaml`` and ``expected.yaml`` (the Modbus register cases live in
tests/modbus/testcases).

- mqtt: a subscription, a topic and a payload -> the readings ``parse.Mapper`` makes, or the
  ``ParseError`` (the quarantine reason) it raises.
- opcua: a value with its variant type, StatusCode and timestamps -> the reading ``map.reading_body``
  encodes (decoded back): the column it lands in, its quality, a Bad value left out.
- http: the events an Ignition gateway POSTs -> the readings ``ignition.map_events`` encodes (decoded
  back) and the events it rejects with their reasons; the rest of a batch is kept.

A new case: write its input.yaml, run ``GOLDEN_WRITE=1 pytest tests/sources/test_golden.py`` to write
expected.yaml, read that file as a reviewer would, then commit both.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from edge.configtypes import build
from edge.encode import decode
from edge.sources.http.ignition import map_events
from edge.sources.mqtt.parse import Mapper, ParseError, Subscription
from edge.sources.opcua.map import reading_body

CASES = Path(__file__).parent / "testcases"
COLLECTED_TS = 1_764_000_001_000_000


def _cases(proto: str) -> list[Path]:
    return sorted(p for p in (CASES / proto).iterdir() if (p / "input.yaml").exists())


def _mqtt(given: dict) -> dict:
    mapper = Mapper(build(Subscription, given["subscription"], "sources[0].subscriptions[0]"))
    try:
        parsed = mapper.parse(given["topic"], given["payload"].encode())
    except ParseError as exc:
        return {"error": str(exc)}
    return {"readings": [{k: v for k, v in p._asdict().items() if v is not None} for p in parsed]}


def _fields(body: bytes) -> dict:
    return {f.name: v for f, v in decode(body).ListFields()
            if f.name not in ("appliance_id", "seq", "kind", "collected_ts", "source")}


def _opcua(given: dict) -> dict:
    body = reading_body(source="plc", point="ns=2;s=Line1.Temp", collected_ts=COLLECTED_TS, **given)
    return _fields(body)


def _http(given: dict) -> dict:
    items, rejected = map_events(given["events"], source="gw", collected_ts=COLLECTED_TS)
    readings = []
    for ts, body in items:
        assert ts == COLLECTED_TS
        readings.append(_fields(body))
    return {"readings": readings, "rejected": [{"index": r.index, "reason": r.reason} for r in rejected]}


RUN = {"mqtt": _mqtt, "opcua": _opcua, "http": _http}


@pytest.mark.parametrize("case", [c for proto in sorted(RUN) for c in _cases(proto)],
                         ids=lambda c: f"{c.parent.name}/{c.name}")
def test_golden(case):
    got = RUN[case.parent.name](yaml.safe_load((case / "input.yaml").read_text()))
    expected_file = case / "expected.yaml"
    if os.environ.get("GOLDEN_WRITE") == "1":
        expected_file.write_text(yaml.safe_dump(got, sort_keys=False, allow_unicode=True))
    assert expected_file.exists(), f"{case}: no expected.yaml (write it with GOLDEN_WRITE=1, then review it)"
    expected = yaml.safe_load(expected_file.read_text())
    assert got == expected
    if case.name.startswith("error_"):
        assert "error" in expected, "a case named error_* must expect an error"


def test_every_case_folder_is_complete_and_both_outcomes_are_covered():
    for proto in RUN:
        cases = _cases(proto)
        assert len(cases) >= 8, proto
        assert all((c / "expected.yaml").exists() for c in cases)
    mqtt = [yaml.safe_load((c / "expected.yaml").read_text()) for c in _cases("mqtt")]
    assert any("error" in e for e in mqtt) and any(e.get("readings") for e in mqtt)
    http = [yaml.safe_load((c / "expected.yaml").read_text()) for c in _cases("http")]
    assert any(e["rejected"] for e in http) and all(e["readings"] for e in http)
