"""Ignition tag events -> readings: the exact JSON the gateway scripts send, Jython quirks included."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.encode import appliance_prefix, decode, frame
from edge.sources.http.ignition import map_event, map_events, quality_of

TS = 1_763_900_000_123  # epoch ms


def reading(event):
    return decode(frame(appliance_prefix("a"), 1, map_event(event, source="gw1", collected_ts=5)))


def ev(**kw):
    base = {"tagPath": "Line1/Motor/Speed", "tagProvider": "default", "value": 1480.5, "quality": "Good",
            "qualityCode": 192, "timestamp": TS, "dataType": "float"}
    base.update(kw)
    return base


def test_float_event_maps_every_field():
    r = reading(ev())
    assert r.point == "[default]Line1/Motor/Speed"
    assert r.value_double == 1480.5
    assert r.quality == "GOOD" and r.status_code == 192
    assert r.source_ts == TS * 1000 and r.collected_ts == 5
    assert (r.protocol, r.source, r.data_type) == ("ignition", "gw1", "float")


@pytest.mark.parametrize(
    "value, dtype, column, expected",
    [
        (42, "int", "value_int", 42),
        (42.0, "long", "value_int", 42),  # Jython long serialised as a float by some json encoders
        (2**40, "long", "value_int", 2**40),
        (42, "float", "value_double", 42.0),
        (True, "bool", "value_bool", True),
        (1, "bool", "value_bool", True),
        ("Running", "unicode", "value_string", "Running"),
        ("caf\u00e9 \u2713", "unicode", "value_string", "caf\u00e9 \u2713"),
        ([[1, "a"], [2, "b"]], "Dataset", "value_json", '[[1,"a"],[2,"b"]]'),
        ({"columns": ["t", "v"], "rows": [[1, 2.5]]}, "BasicDataset", "value_json", '{"columns":["t","v"],"rows":[[1,2.5]]}'),
        (12.5, "int", "value_double", 12.5),  # fractional value under an int type is not truncated
    ],
)
def test_values_typed_by_datatype(value, dtype, column, expected):
    r = reading(ev(value=value, dataType=dtype))
    assert r.HasField(column)
    assert getattr(r, column) == expected


def test_none_value_is_a_reading_without_a_value():
    r = reading(ev(value=None, quality="Bad_NotConnected", qualityCode=None))
    assert r.quality == "BAD"
    for col in ("value_double", "value_int", "value_bool", "value_string", "value_json"):
        assert not r.HasField(col)


def test_float_timestamp_from_jython():
    assert reading(ev(timestamp=float(TS))).source_ts == TS * 1000


def test_tag_path_with_provider_already_in_it():
    assert reading(ev(tagPath="[edge]Plant/Tank1/Level")).point == "[edge]Plant/Tank1/Level"


@pytest.mark.parametrize(
    "name, code, level",
    [
        ("Good", None, "GOOD"), ("Good_Unspecified", None, "GOOD"), ("Uncertain_LastKnownValue", None, "UNCERTAIN"),
        ("Bad_Stale", None, "BAD"), ("Error_Configuration", None, "BAD"), (None, None, "BAD"),
        ("Good", 192, "GOOD"), (None, 0, "GOOD"), (None, 1 << 30, "UNCERTAIN"), (None, 2 << 30, "BAD"),
        ("Good", 2 << 30, "BAD"),  # the numeric code wins over a name that disagrees
    ],
)
def test_quality(name, code, level):
    assert quality_of(name, code)[0] == level


@pytest.mark.parametrize(
    "event, reason",
    [
        ("not an object", "not an object"),
        (ev(tagPath=None), "tagPath"),
        (ev(tagPath=""), "tagPath"),
        (ev(tagPath=7), "tagPath"),
        (ev(timestamp=None), "timestamp"),
        (ev(timestamp="2026-11-24T00:00:00Z"), "timestamp"),
        (ev(timestamp=TS // 1000), "epoch milliseconds"),  # seconds by mistake
        (ev(timestamp=TS * 1000), "epoch milliseconds"),  # microseconds by mistake
        (ev(timestamp=True), "timestamp"),
        (ev(dataType=5), "dataType"),
        (ev(tagProvider=["x"]), "tagProvider"),
    ],
)
def test_invalid_events_give_a_reason(event, reason):
    with pytest.raises(ValueError, match=reason):
        map_event(event, source="gw1", collected_ts=5)


def test_batch_keeps_good_events_and_indexes_bad_ones():
    items, rejected = map_events([ev(), ev(timestamp=None), ev(value=3, dataType="int"), 17], source="gw1", collected_ts=9)
    assert len(items) == 2 and all(ts == 9 for ts, _ in items)
    assert [r.index for r in rejected] == [1, 3]


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=10,
)


@given(value=_json_values, dtype=st.sampled_from(["float", "int", "long", "bool", "unicode", "str", "Dataset", None, "weird"]),
       ts=st.integers(631_152_000_000, 7_258_118_400_000) | st.floats(631_152_000_000, 7_258_118_400_000))
def test_any_json_value_maps_or_is_rejected_cleanly(value, dtype, ts):
    e = json.loads(json.dumps(ev(value=value, dataType=dtype, timestamp=ts)))
    items, rejected = map_events([e], source="gw1", collected_ts=1)
    assert len(items) + len(rejected) == 1
    if items:
        r = decode(frame(appliance_prefix("a"), 1, items[0][1]))
        assert r.IsInitialized() and r.point == "[default]Line1/Motor/Speed"
