"""Pure Sparkplug B decoding: topics, datatypes, alias tables (no broker)."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.pb.sparkplug_b_pb2 import Payload
from edge.sources.mqtt.parse import Parsed, ParseError
from edge.sources.mqtt.sparkplug import T, Decoder, parse_topic

TS = 1_764_000_000_123


def payload(*metrics: dict, ts: int = TS, seq: int = 0) -> bytes:
    p = Payload(timestamp=ts, seq=seq)
    for m in metrics:
        props = m.pop("props", None)
        mm = p.metrics.add(**m)
        for k, v in (props or {}).items():
            mm.properties.keys.append(k)
            if isinstance(v, str):
                mm.properties.values.add(type=T["String"], string_value=v)
            else:
                mm.properties.values.add(type=T["Int32"], int_value=v)
    return p.SerializeToString()


TOPICS = [
    ("spBv1.0/g/NDATA/n", ("g", "NDATA", "n", None)),
    ("spBv1.0/g/DDATA/n/d", ("g", "DDATA", "n", "d")),
    ("spBv1.0/STATE/host1", None),
]


@pytest.mark.parametrize("topic,expected", TOPICS)
def test_topics(topic, expected):
    assert parse_topic(topic) == expected


@pytest.mark.parametrize("topic", ["spBv1.0/g/NDATA", "spBv1.0/g/DDATA/n", "spBv1.0/g/NDATA/n/d", "spBv1.0/g/XDATA/n",
                                   "spAv1.0/g/NDATA/n", "spBv1.0//NDATA/n"])
def test_bad_topics(topic):
    with pytest.raises(ParseError):
        parse_topic(topic)


VALUES = [
    # (metric fields, expected value, expected data_type)
    ({"datatype": T["Int8"], "int_value": 0xFFFFFFFF}, -1, "Int8"),
    ({"datatype": T["Int16"], "int_value": 0xFFFF8000}, -32768, "Int16"),
    ({"datatype": T["Int32"], "int_value": 0x80000000}, -(2**31), "Int32"),
    ({"datatype": T["UInt32"], "int_value": 0xFFFFFFFF}, 2**32 - 1, "UInt32"),
    ({"datatype": T["Int64"], "long_value": 2**64 - 2}, -2, "Int64"),
    ({"datatype": T["UInt64"], "long_value": 2**64 - 1}, 2**64 - 1, "UInt64"),
    ({"datatype": T["Float"], "float_value": 1.5}, 1.5, "Float"),
    ({"datatype": T["Double"], "double_value": -0.25}, -0.25, "Double"),
    ({"datatype": T["Boolean"], "boolean_value": True}, True, "Boolean"),
    ({"datatype": T["String"], "string_value": "RUNNING"}, "RUNNING", "String"),
    ({"datatype": T["DateTime"], "long_value": TS}, TS, "DateTime"),
    ({"datatype": T["Bytes"], "bytes_value": b"\x01\x02"}, b"\x01\x02", "Bytes"),
    ({"datatype": T["Double"], "is_null": True}, None, "Double"),
    ({"datatype": T["Int16Array"], "bytes_value": struct.pack("<3h", -1, 0, 7)}, [-1, 0, 7], "Int16Array"),
    ({"datatype": T["DoubleArray"], "bytes_value": struct.pack("<2d", 1.5, 2.5)}, [1.5, 2.5], "DoubleArray"),
    ({"datatype": T["BooleanArray"], "bytes_value": struct.pack("<I", 3) + bytes([0b10100000])}, [True, False, True],
     "BooleanArray"),
    ({"datatype": T["StringArray"], "bytes_value": b"ab\0c\0"}, ["ab", "c"], "StringArray"),
]


@pytest.mark.parametrize("fields,value,dtype", VALUES)
def test_metric_values(fields, value, dtype):
    out, _ = Decoder().parse("spBv1.0/g/NDATA/n", payload({"name": "m", **fields}))
    assert out == [Parsed("g/n/m", value, "GOOD", None, TS * 1000, None, dtype)]


def test_dataset_value_is_structured():
    p = Payload(timestamp=TS)
    m = p.metrics.add(name="tbl", datatype=T["DataSet"])
    m.dataset_value.num_of_columns = 2
    m.dataset_value.columns.extend(["a", "b"])
    m.dataset_value.types.extend([T["Int32"], T["String"]])
    row = m.dataset_value.rows.add()
    row.elements.add(int_value=5)
    row.elements.add(string_value="x")
    out, _ = Decoder().parse("spBv1.0/g/NDATA/n", p.SerializeToString())
    assert out[0].value == {"columns": ["a", "b"], "types": ["Int32", "String"], "rows": [[5, "x"]]}


def test_birth_defines_aliases_and_data_uses_them():
    d = Decoder()
    birth = payload(
        {"name": "temperature", "alias": 1, "datatype": T["Double"], "double_value": 60.0, "props": {"engUnit": "degC"}},
        {"name": "count", "alias": 2, "datatype": T["Int32"], "int_value": 3},
    )
    out, changed = d.parse("spBv1.0/g/DBIRTH/n/dev1", birth)
    assert changed
    assert [p.point for p in out] == ["g/n/dev1/temperature", "g/n/dev1/count", "g/n/dev1/$state"]
    assert out[0].unit == "degC"
    data = payload({"alias": 1, "double_value": 61.5, "timestamp": TS + 5}, {"alias": 2, "int_value": 0xFFFFFFFE})
    out, changed = d.parse("spBv1.0/g/DDATA/n/dev1", data)
    assert not changed
    assert out == [
        Parsed("g/n/dev1/temperature", 61.5, "GOOD", None, (TS + 5) * 1000, None, "Double"),
        Parsed("g/n/dev1/count", -2, "GOOD", None, TS * 1000, None, "Int32"),
    ]
    # The table survives a restart of the appliance through snapshot() (saved as JSON).
    d2 = Decoder(json.loads(json.dumps(d.snapshot())))
    assert d2.parse("spBv1.0/g/DDATA/n/dev1", data)[0] == out


def test_unknown_alias_is_a_parse_error():
    with pytest.raises(ParseError, match="unknown metric alias 7"):
        Decoder().parse("spBv1.0/g/DDATA/n/d", payload({"alias": 7, "double_value": 1.0}))


def test_nbirth_resets_the_node_aliases():
    d = Decoder()
    d.parse("spBv1.0/g/NBIRTH/n", payload({"name": "a", "alias": 1, "datatype": T["Double"], "double_value": 1.0}))
    d.parse("spBv1.0/g/NBIRTH/n", payload({"name": "b", "alias": 2, "datatype": T["Double"], "double_value": 1.0}))
    with pytest.raises(ParseError, match="unknown metric alias 1"):
        d.parse("spBv1.0/g/NDATA/n", payload({"alias": 1, "double_value": 2.0}))


BAD = [
    ("spBv1.0/g/NDATA/n", b"\xff\xff\xff", "not a Sparkplug B payload"),
    ("spBv1.0/g/NDATA/n", payload({"name": "x", "datatype": T["Double"], "string_value": "hot"}), "datatype Double but"),
    ("spBv1.0/g/NDATA/n", payload({"double_value": 1.0}), "neither a name nor an alias"),
    ("spBv1.0/g/NDATA/n", payload({"name": "x", "datatype": T["Int32Array"], "bytes_value": b"\x01\x02\x03"}),
     "not a multiple of 4"),
    ("spBv1.0/g/NDATA/n", payload({"name": "x", "datatype": T["BooleanArray"], "bytes_value": b"\x09\0\0\0\x01"}),
     "says 9 values"),
    ("spBv1.0/g/NDATA/n", payload({"name": "x", "datatype": T["StringArray"], "bytes_value": b"ab"}), "NUL-terminated"),
]


@pytest.mark.parametrize("topic,raw,reason", BAD)
def test_bad_payloads(topic, raw, reason):
    with pytest.raises(ParseError, match=reason):
        Decoder().parse(topic, raw)


def test_death_and_commands():
    d = Decoder()
    out, _ = d.parse("spBv1.0/g/DDEATH/n/d", payload())
    assert out == [Parsed("g/n/d/$state", "OFFLINE", "BAD", None, None, None, "DDEATH")]
    assert d.parse("spBv1.0/g/NCMD/n", payload({"name": "Node Control/Rebirth", "boolean_value": True})) == ([], False)
    assert d.parse("spBv1.0/STATE/host", b'{"online": true}') == ([], False)


def test_quality_property():
    out, _ = Decoder().parse("spBv1.0/g/NDATA/n", payload(
        {"name": "a", "datatype": T["Double"], "double_value": 1.0, "props": {"Quality": 0}},
        {"name": "b", "datatype": T["Double"], "double_value": 1.0, "props": {"Quality": 192}},
    ))
    assert [(p.quality, p.status_code) for p in out] == [("BAD", 0), ("GOOD", 192)]


@settings(max_examples=300)
@given(st.binary(max_size=200), st.sampled_from(["NDATA", "DBIRTH", "NBIRTH", "DDATA"]))
def test_any_bytes_decode_or_raise_parse_error(raw, mtype):
    topic = f"spBv1.0/g/{mtype}/n" + ("/d" if mtype.startswith("D") else "")
    try:
        out, _ = Decoder().parse(topic, raw)
    except ParseError as exc:
        assert str(exc)
    else:
        assert all(p.point.startswith("g/n") for p in out)


@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.floats(allow_nan=False)), min_size=1, max_size=20, unique_by=lambda x: x[0]))
def test_alias_round_trip(metrics):
    d = Decoder()
    d.parse("spBv1.0/g/NBIRTH/n", payload(*[
        {"name": f"m{a}", "alias": a, "datatype": T["Double"], "double_value": 0.0} for a, _ in metrics]))
    out, _ = d.parse("spBv1.0/g/NDATA/n", payload(*[{"alias": a, "double_value": v} for a, v in metrics]))
    assert [(p.point, p.value) for p in out] == [(f"g/n/m{a}", v) for a, v in metrics]
