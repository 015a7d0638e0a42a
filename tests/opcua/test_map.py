"""Pure mapping of OPC-UA values, StatusCodes and timestamps onto the reading schema."""

from __future__ import annotations

import json
import math
import struct
from datetime import datetime, timedelta, timezone

import pytest
from asyncua import ua
from hypothesis import example, given
from hypothesis import strategies as st

from edge.encode import decode
from edge.sources.opcua.map import datavalue_body, float32, plain, quality, ts_us

T0 = datetime(2026, 11, 24, 3, 0, 0, 123456, tzinfo=timezone.utc)
T0_US = int(T0.timestamp()) * 1_000_000 + 123456


@pytest.mark.parametrize("code,expected", [
    (0x00000000, "GOOD"),
    (0x00960000, "GOOD"),  # GoodLocalOverride
    (0x40940000, "UNCERTAIN"),  # UncertainEngineeringUnitsExceeded
    (0x408F0000, "UNCERTAIN"),
    (0x808A0000, "BAD"),  # BadNotConnected
    (0x80340000, "BAD"),
    (0xC0000000, "BAD"),  # reserved severity 11 counts as bad
])
def test_quality_from_severity_bits(code, expected):
    assert quality(code) == expected


def test_timestamps_microseconds_and_null():
    assert ts_us(T0) == T0_US
    assert ts_us(T0.replace(tzinfo=None)) == T0_US  # naive means UTC in OPC-UA
    assert ts_us(None) is None
    assert ts_us(datetime(1601, 1, 1, tzinfo=timezone.utc)) is None  # DateTime 0: "no timestamp"


def _dv(value, vt, status=ua.StatusCodes.Good, src=T0, srv=T0 + timedelta(milliseconds=5)):
    return ua.DataValue(ua.Variant(value, vt), StatusCode=ua.StatusCode(status), SourceTimestamp=src, ServerTimestamp=srv)


def _read(dv, **kw):
    return decode(datavalue_body(dv, source="plc", point="p", collected_ts=T0_US + 10**6, **kw))


CASES = [
    (True, ua.VariantType.Boolean, "value_bool", True, "Boolean"),
    (-5, ua.VariantType.SByte, "value_int", -5, "SByte"),
    (65535, ua.VariantType.UInt16, "value_int", 65535, "UInt16"),
    (-(2**63), ua.VariantType.Int64, "value_int", -(2**63), "Int64"),
    (2**64 - 1, ua.VariantType.UInt64, "value_json", str(2**64 - 1), "UInt64"),
    (0.1, ua.VariantType.Float, "value_double", 0.1, "Float"),
    (0.1, ua.VariantType.Double, "value_double", 0.1, "Double"),
    ("Läuft", ua.VariantType.String, "value_string", "Läuft", "String"),
    (b"\x00\xff", ua.VariantType.ByteString, "value_string", "AP8=", "ByteString"),
    (T0, ua.VariantType.DateTime, "value_string", "2026-11-24T03:00:00.123456Z", "DateTime"),
    (ua.LocalizedText("Auto"), ua.VariantType.LocalizedText, "value_string", "Auto", "LocalizedText"),
    (ua.NodeId("x", 2), ua.VariantType.NodeId, "value_string", "ns=2;s=x", "NodeId"),
    (ua.QualifiedName("Temp", 3), ua.VariantType.QualifiedName, "value_string", "3:Temp", "QualifiedName"),
]


@pytest.mark.parametrize("value,vt,column,expected,dtype", CASES, ids=[c[4] for c in CASES])
def test_builtin_types_land_in_their_column(value, vt, column, expected, dtype):
    r = _read(_dv(value, vt))
    got = getattr(r, column)
    if column == "value_json":
        got = str(json.loads(got))
    assert got == expected
    assert r.data_type == dtype
    assert r.quality == "GOOD" and r.status_code == 0
    assert r.source_ts == T0_US and r.server_ts == T0_US + 5000 and r.collected_ts == T0_US + 10**6
    assert r.protocol == "opcua" and r.point == "p" and r.source == "plc"


def test_arrays_and_structures_go_to_value_json():
    r = _read(_dv([1.5, 2.5], ua.VariantType.Double))
    assert json.loads(r.value_json) == [1.5, 2.5] and r.data_type == "Double[]"
    r = _read(_dv([0.1, 0.2], ua.VariantType.Float))
    assert json.loads(r.value_json) == [0.1, 0.2]  # float32 noise removed element-wise too
    r = _read(_dv(ua.Range(Low=-1.0, High=99.5), ua.VariantType.ExtensionObject))
    assert json.loads(r.value_json) == {"Low": -1.0, "High": 99.5} and r.data_type == "Range"
    eu = ua.EUInformation(NamespaceUri="u", UnitId=4408652, DisplayName=ua.LocalizedText("degC"),
                          Description=ua.LocalizedText("degree Celsius"))
    r = _read(_dv(eu, ua.VariantType.ExtensionObject))
    assert json.loads(r.value_json) == {"NamespaceUri": "u", "UnitId": 4408652, "DisplayName": "degC",
                                        "Description": "degree Celsius"}


def test_undecoded_extension_object_keeps_its_bytes():
    raw = ua.ExtensionObject(TypeId=ua.NodeId(5001, 2), Body=b"\x01\x02")
    assert plain(raw) == {"type_id": "ns=2;i=5001", "body_base64": "AQI="}


def test_bad_status_has_null_value_and_raw_code():
    r = _read(_dv(None, ua.VariantType.Null, ua.StatusCodes.BadNotConnected))
    assert r.quality == "BAD" and r.status_code == 0x808A0000
    assert not any(r.HasField(f) for f in ("value_double", "value_int", "value_bool", "value_string", "value_json"))
    r = _read(_dv(12.5, ua.VariantType.Double, ua.StatusCodes.UncertainEngineeringUnitsExceeded))
    assert r.quality == "UNCERTAIN" and r.status_code == 0x40940000 and r.value_double == 12.5


def test_missing_timestamps_stay_missing():
    r = _read(ua.DataValue(ua.Variant(1.0, ua.VariantType.Double)))
    assert not r.HasField("source_ts") and not r.HasField("server_ts")
    assert r.collected_ts == T0_US + 10**6  # ours, never put in the source's place


def test_non_finite_doubles_are_kept_as_json_strings():
    assert json.loads(_read(_dv(math.nan, ua.VariantType.Double)).value_json) == "nan"
    assert json.loads(_read(_dv(-math.inf, ua.VariantType.Float)).value_json) == "-inf"


def test_unit_is_passed_through():
    assert _read(_dv(1.0, ua.VariantType.Double), unit="bar").unit == "bar"


@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
@example(99999997952.0)  # its shortest float32 decimal is 1e11, whose repr is one character longer
def test_float32_shortest_repr_round_trips(f):
    x = struct.unpack("<f", struct.pack("<f", f))[0]
    y = float32(x)
    assert struct.pack("<f", y) == struct.pack("<f", x)
    assert _significant_digits(y) <= _significant_digits(x)  # 99999997952.0 -> 1e11: fewer digits, longer repr


def _significant_digits(v: float) -> int:
    mantissa = repr(abs(v)).split("e")[0].replace(".", "").strip("0")
    return len(mantissa) or 1
