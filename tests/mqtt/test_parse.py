"""Pure MQTT payload mapping: table-driven cases and properties (no broker)."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from edge.config import parse
from edge.configtypes import ConfigError, build
from edge.sources.mqtt.parse import (
    JsonMapping, Mapper, Parsed, ParseError, Router, Subscription, check_filter, parse_quality, parse_timestamp,
    topic_matches,
)

T0_US = 1_764_000_000_123_000  # 2025-11-24T16:00:00.123Z
T0_MS = T0_US // 1000


def mapper(**kw) -> Mapper:
    j = kw.pop("json", {})
    return Mapper(build(Subscription, {"topic": "#", **kw, "json": j}, "sub"))


# ------------------------------------------------------------------ topic filters

MATCHES = [
    ("a/b/c", "a/b/c", True),
    ("a/+/c", "a/b/c", True),
    ("a/+/c", "a/b/d", False),
    ("a/#", "a", True),  # '#' also matches the parent level
    ("a/#", "a/b/c/d", True),
    ("#", "a/b", True),
    ("+", "a", True),
    ("+", "a/b", False),
    ("+/+", "/b", True),  # empty levels are levels
    ("a/+", "a/", True),
    ("#", "$SYS/broker/load", False),  # wildcards at the root skip $ topics
    ("+/broker", "$SYS/broker", False),
    ("$SYS/#", "$SYS/broker", True),
    ("a/b", "a/b/c", False),
    ("a/b/c", "a/b", False),
]


@pytest.mark.parametrize("flt,topic,expected", MATCHES)
def test_topic_matches(flt, topic, expected):
    assert topic_matches(flt, topic) is expected


@pytest.mark.parametrize("flt", ["", "a/#/b", "a#", "a/b+", "+a", "a/\0"])
def test_bad_filters_are_refused(flt):
    with pytest.raises(ValueError):
        check_filter(flt)


levels = st.lists(st.text(st.characters(blacklist_characters="/+#$\0", blacklist_categories=("Cs",)), max_size=4),
                  min_size=1, max_size=5)


@given(levels, st.data())
def test_filter_built_from_topic_matches_it(parts, data):
    topic = "/".join(parts)
    assume(topic)  # an empty topic is not a valid MQTT topic
    flt_parts = [p if not data.draw(st.booleans()) else "+" for p in parts]
    cut = data.draw(st.integers(0, len(parts)))
    flt = "/".join(flt_parts[:cut] + ["#"]) if data.draw(st.booleans()) else "/".join(flt_parts)
    check_filter(flt)
    assert topic_matches(flt, topic)


# ------------------------------------------------------------------ timestamps

TIMESTAMPS = [
    (T0_MS / 1000, "auto", T0_US),
    (T0_MS, "auto", T0_US),
    (T0_US, "auto", T0_US),
    (T0_US * 1000, "auto", T0_US),
    (str(T0_MS), "auto", T0_US),
    (T0_MS, "epoch_ms", T0_US),
    (T0_MS // 1000, "epoch_s", T0_US - 123_000),
    (T0_US, "epoch_us", T0_US),
    (T0_US * 1000 + 999, "epoch_ns", T0_US),
    ("2025-11-24T16:00:00.123Z", "auto", T0_US),
    ("2025-11-24T16:00:00.123+00:00", "iso8601", T0_US),
    ("2025-11-24T17:00:00.123+01:00", "iso8601", T0_US),
    ("2025-11-24T16:00:00.123", "iso8601", T0_US),  # no offset: UTC, documented
    ("2025-11-24 16:00:00.123", "auto", T0_US),
]


@pytest.mark.parametrize("raw,fmt,expected", TIMESTAMPS)
def test_timestamps(raw, fmt, expected):
    assert parse_timestamp(raw, fmt) == expected


BAD_TIMESTAMPS = [
    (True, "auto", "not a time"),
    ("yesterday", "auto", "not ISO 8601"),
    (T0_MS, "epoch_us", "outside 1990..2200"),  # ms read as us: 1970
    (T0_MS, "epoch_s", "outside 1990..2200"),
    ("2025-11-24T16:00:00Z", "epoch_ms", "not a number"),
    (T0_MS, "iso8601", "expected an ISO 8601 string"),
    (float("nan"), "auto", "not a time"),
    ({"a": 1}, "auto", "type dict"),
    (-5, "auto", "outside"),
]


@pytest.mark.parametrize("raw,fmt,reason", BAD_TIMESTAMPS)
def test_bad_timestamps(raw, fmt, reason):
    with pytest.raises(ParseError, match=reason):
        parse_timestamp(raw, fmt)


@given(st.integers(631_152_000_000, 7_258_118_399_999))
def test_epoch_ms_round_trip(ms):
    assert parse_timestamp(ms, "epoch_ms") == ms * 1000
    assert parse_timestamp(ms, "auto") == ms * 1000
    iso = datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds")
    assert parse_timestamp(iso, "iso8601") == ms * 1000


# ------------------------------------------------------------------ quality

QUALITIES = [
    (None, ("GOOD", None)), (True, ("GOOD", None)), (False, ("BAD", None)), ("good", ("GOOD", None)),
    ("Bad", ("BAD", None)), ("UNCERTAIN", ("UNCERTAIN", None)), ("stale", ("UNCERTAIN", None)),
    ("BadCommunicationError", ("BAD", None)), ("GoodOverload", ("GOOD", None)), (0, ("GOOD", 0)),
    (0x40000000, ("UNCERTAIN", 0x40000000)), (0x80310000, ("BAD", 0x80310000)),
]


@pytest.mark.parametrize("raw,expected", QUALITIES)
def test_quality(raw, expected):
    assert parse_quality(raw) == expected


@pytest.mark.parametrize("raw", ["meh", -1, 1 << 33, 1.5, [1]])
def test_bad_quality(raw):
    with pytest.raises(ParseError):
        parse_quality(raw)


# ------------------------------------------------------------------ payload mapping (golden table)

SIM = {"ts": T0_MS, "value": 65.2, "quality": "GOOD", "unit": "degC", "seq": 17}
GOLDEN = [
    # (subscription config, topic, payload, expected readings)
    ({}, "plant/sim1/line1/press1/temperature", json.dumps(SIM),
     [Parsed("plant/sim1/line1/press1/temperature", 65.2, data_type="double")]),
    ({"json": {"timestamp": "ts", "quality": "quality", "unit": "unit"}}, "t", json.dumps(SIM),
     [Parsed("t", 65.2, "GOOD", None, T0_US, "degC", "double")]),
    ({"point": "{2}/{3}/{-1}"}, "plant/sim1/line1/press1/temperature", json.dumps(SIM),
     [Parsed("line1/press1/temperature", 65.2, data_type="double")]),
    ({"json": {"value": "$"}}, "t", json.dumps(SIM), [Parsed("t", SIM, data_type="json")]),
    ({"json": {"value": "d.v.1", "point": "d.name"}, "point": "{0}/{field}"}, "site/x",
     '{"d": {"v": [1, 2.5], "name": "flow"}}', [Parsed("site/flow", 2.5, data_type="double")]),
    ({"json": {"value": "v", "quality": "q"}}, "t", '{"v": false, "q": 2150891520}',
     [Parsed("t", False, "BAD", 2150891520, data_type="bool")]),
    ({"json": {"value": "v"}}, "t", '{"v": "RUNNING"}', [Parsed("t", "RUNNING", data_type="string")]),
    ({"json": {"value": "v"}}, "t", '{"v": null}', [Parsed("t", None)]),
    ({"json": {"value": "v", "structured": True}}, "t", '{"v": {"a": [1]}}', [Parsed("t", {"a": [1]}, data_type="json")]),
    ({"json": {"value": "v", "timestamp": "ts"}}, "t", '{"v": 1}', [Parsed("t", 1.0, data_type="double")]),  # missing ts: none
    ({"format": "number", "unit": "bar"}, "a/b", b" 12.5\n", [Parsed("a/b", 12.5, unit="bar", data_type="double")]),
    ({"format": "number"}, "a/b", b"-7", [Parsed("a/b", -7.0, data_type="double")]),
    ({"format": "number"}, "a/b", b"1e3", [Parsed("a/b", 1000.0, data_type="double")]),
    ({"format": "text"}, "a/b", "Störung".encode(), [Parsed("a/b", "Störung", data_type="string")]),
]


@pytest.mark.parametrize("cfg,topic,payload,expected", GOLDEN)
def test_golden(cfg, topic, payload, expected):
    payload = payload.encode() if isinstance(payload, str) else payload
    assert mapper(**cfg).parse(topic, payload) == expected


MALFORMED = [
    ({}, "t", b"{not json", "invalid JSON"),
    ({}, "t", b"\xff\xfe{}", "not valid UTF-8"),
    ({}, "t", b'{"val": 1}', "no field 'value'"),
    ({}, "t", b"[1, 2]", "no field 'value'"),
    ({}, "t", b'"just a string"', "no field 'value'"),
    ({}, "t", b'{"value": {"nested": 1}}', "set json.structured"),
    ({}, "t", b'{"value": [1,2]}', "is a list"),
    ({}, "t", b'{"value": NaN}', "not a finite number"),
    ({"json": {"timestamp": "ts"}}, "t", b'{"value": 1, "ts": "soon"}', "not ISO 8601"),
    ({"json": {"timestamp": "ts"}}, "t", b'{"value": 1, "ts": true}', "not a time"),
    ({"json": {"quality": "q"}}, "t", b'{"value": 1, "q": "meh"}', "not good/bad/uncertain"),
    ({"json": {"point": "n"}, "point": "{field}"}, "t", b'{"value": 1}', "no usable point name"),
    ({"point": "{5}"}, "a/b", b'{"value": 1}', "has no level 5"),
    ({"format": "number"}, "t", b"twelve", "not a number"),
    ({"format": "number"}, "t", b"1e999", "out of range"),
    ({"format": "number"}, "t", b"\xff", "not valid UTF-8"),
    ({"format": "text"}, "t", b"\xc3\x28", "not valid UTF-8"),
    ({}, "t", b"[" * 100_000, "invalid JSON"),
]


@pytest.mark.parametrize("cfg,topic,payload,reason", MALFORMED)
def test_malformed_payloads_raise_parse_error_with_reason(cfg, topic, payload, reason):
    with pytest.raises(ParseError, match=reason.replace("(", r"\(")):
        mapper(**cfg).parse(topic, payload)


@settings(max_examples=300)
@given(st.binary(max_size=300), st.sampled_from(["json", "number", "text"]))
def test_any_bytes_parse_or_raise_parse_error(payload, fmt):
    # Never anything else: a crash here would stop the collector.
    try:
        out = mapper(format=fmt).parse("a/b", payload)
    except ParseError as exc:
        assert str(exc)
    else:
        assert len(out) == 1 and out[0].point == "a/b"


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))


@given(json_scalars, st.integers(631_152_000_000, 7_258_118_399_999))
def test_json_value_and_timestamp_survive(value, ts):
    out = mapper(json={"value": "a.b", "timestamp": "t"}).parse("x", json.dumps({"a": {"b": value}, "t": ts}).encode())
    assert out[0].source_ts == ts * 1000
    got = out[0].value
    if isinstance(value, int) and not isinstance(value, bool):
        assert type(got) is float and math.isclose(got, value)  # numbers are double unless declared int64
    else:
        assert got == value or (isinstance(value, float) and math.isclose(got, value))


def test_router_first_match_wins_and_caches():
    subs = [build(Subscription, {"topic": "plant/sim1/#", "format": "number"}), build(Subscription, {"topic": "plant/#"})]
    r = Router(subs, cache_size=2)
    assert r.route("plant/sim1/a").format == "number"
    assert r.route("plant/sim2/a").format == "json"
    assert r.route("other/x") is None
    assert r.route("plant/sim1/b").format == "number"  # after the cache was cleared


CONFIG_ERRORS = [
    ({"topic": "a/#/b"}, "sources[0].subscriptions[0].topic"),
    ({"topic": "a", "qos": 2}, "sources[0].subscriptions[0].qos"),
    ({"topic": "a", "point": "{nope}"}, "sources[0].subscriptions[0].point"),
    ({"topic": "a", "point": "{field}"}, "sources[0].subscriptions[0].point"),
    ({"topic": "a", "json": {"value": "a..b"}}, "sources[0].subscriptions[0].json.value"),
    ({"topic": "a", "format": "xml"}, "sources[0].subscriptions[0].format"),
    ({"topic": "plant/#", "format": "sparkplug"}, "sources[0].subscriptions[0].topic"),
    ({"topic": "a", "jsn": {}}, "sources[0].subscriptions[0].jsn"),
]


@pytest.mark.parametrize("sub,path", CONFIG_ERRORS)
def test_config_errors_name_the_field(sub, path):
    with pytest.raises(ConfigError) as ei:
        parse({"appliance_id": "a1", "sources": [{"name": "m", "type": "mqtt", "subscriptions": [sub]}]}, env={})
    assert ei.value.path == path


SOURCE_ERRORS = [
    ({"url": "http://x"}, "url"), ({"url": "mqtt://"}, "url"), ({"url": "mqtt://u:p@h"}, "url"),
    ({"subscriptions": []}, "subscriptions"), ({"max_inflight": 0}, "max_inflight"),
    ({"password": "x"}, "username"), ({"ca_file": "/ca.pem"}, "ca_file"), ({"key_file": "/k"}, "cert_file"),
    ({"subscriptions": [{"topic": "spBv1.0/#", "format": "sparkplug", "qos": 0}]}, "subscriptions[0].qos"),
]


@pytest.mark.parametrize("over,key", SOURCE_ERRORS)
def test_source_config_errors(over, key):
    raw = {"name": "m", "type": "mqtt", "subscriptions": [{"topic": "plant/#"}], **over}
    with pytest.raises(ConfigError) as ei:
        parse({"appliance_id": "a1", "sources": [raw]}, env={})
    assert ei.value.path == f"sources[0].{key}"


def test_password_is_a_secret_and_comes_from_a_file(tmp_path):
    f = tmp_path / "pw"
    f.write_text("s3cret-very-long\n")
    cfg = parse({"appliance_id": "a1", "sources": [{
        "name": "m", "type": "mqtt", "url": "mqtts://broker.example:8883", "username": "edge",
        "password": "${MQTT_PASSWORD}", "subscriptions": [{"topic": "plant/#"}]}]}, env={"MQTT_PASSWORD_FILE": str(f)})
    src = cfg.sources[0]
    assert src.password == "s3cret-very-long"
    assert "s3cret" not in repr(src)
    assert JsonMapping().value == "value"


# ------------------------------------------------------------------ one column per point: declared or stable types


def column(p: Parsed) -> str:
    """The value column encode_reading puts this reading's value in."""
    from edge.encode import decode, encode_reading
    msg = decode(encode_reading(source="s", protocol="mqtt", point=p.point, value=p.value, data_type=p.data_type))
    return next(f for f in ("value_double", "value_int", "value_bool", "value_string", "value_json") if msg.HasField(f))


@pytest.mark.parametrize("fmt,payloads", [
    ("json", [b'{"value": 40}', b'{"value": 40.5}', b'{"value": -3}', b'{"value": 1e3}']),
    ("number", [b"40", b"40.5", b"-3", b"1e3"]),
])
def test_a_point_sending_40_and_40_5_stays_in_one_column(fmt, payloads):
    # A third-party device: 48 of 67 points were split across value_int and value_double.
    m = mapper(format=fmt)
    readings = [m.parse("plant/dev/temp", p)[0] for p in payloads]
    assert {column(r) for r in readings} == {"value_double"}
    assert {r.data_type for r in readings} == {"double"}
    assert [r.value for r in readings] == [40.0, 40.5, -3.0, 1000.0]


def test_declared_types_per_point_and_per_subscription():
    m = mapper(types={"plant/dev/count": "int64", "plant/*/state": "string", "plant/*/on": "bool"})
    assert m.parse("plant/dev/count", b'{"value": 40}') == [Parsed("plant/dev/count", 40, data_type="int64")]
    assert column(m.parse("plant/dev/count", b'{"value": 9007199254740993}')[0]) == "value_int"
    assert m.parse("plant/dev/count", b'{"value": 9007199254740993}')[0].value == 9007199254740993  # exact past 2^53
    assert m.parse("plant/dev/count", b'{"value": 41.0}')[0].value == 41  # an integral number is accepted
    assert m.parse("plant/dev/count", b'{"value": "42"}')[0].value == 42
    assert m.parse("plant/x/state", b'{"value": 3}') == [Parsed("plant/x/state", "3", data_type="string")]
    assert m.parse("plant/x/on", b'{"value": 1}')[0].value is True
    assert m.parse("plant/x/on", b'{"value": "OFF"}')[0].value is False
    assert m.parse("plant/dev/temp", b'{"value": 40}')[0].data_type == "double"  # undeclared: the stable rule
    sub = mapper(format="number", type="int64")
    assert sub.parse("a/b", b"7") == [Parsed("a/b", 7, data_type="int64")]
    assert mapper(type="string").parse("a", b'{"value": true}')[0].value == "true"
    assert mapper(format="text", type="double").parse("a", b" 12.5 ")[0].value == 12.5


@pytest.mark.parametrize("cfg,payload,reason", [
    ({"types": {"t": "int64"}}, b'{"value": 40.5}', "value 40.5 is not a 64-bit integer (declared int64)"),
    ({"types": {"t": "int64"}}, b'{"value": 9223372036854775808}', "is not a 64-bit integer"),
    ({"types": {"t": "double"}}, b'{"value": "warm"}', "value 'warm' is not a number (declared double)"),
    ({"types": {"t": "double"}}, b'{"value": true}', "is not a number"),
    ({"types": {"t": "bool"}}, b'{"value": 2}', "value 2 is not a boolean (declared bool)"),
    ({"type": "string", "json": {"structured": True}}, b'{"value": {"a": 1}}', "is not a scalar (declared string)"),
    ({}, b'{"value": ' + b"9" * 400 + b"}", "out of range for double"),
    ({"format": "number", "type": "int64"}, b"1.5", "declared int64"),
])
def test_a_value_that_is_not_its_declared_type_is_quarantined(cfg, payload, reason):
    with pytest.raises(ParseError, match=re.escape(reason)):
        mapper(**cfg).parse("t", payload)


@given(st.integers(-(2**63), 2**63 - 1))
def test_declared_int64_keeps_every_integer_exactly(n):
    (p,) = mapper(type="int64").parse("x", json.dumps({"value": n}).encode())
    assert p.value == n and type(p.value) is int and column(p) == "value_int"


@pytest.mark.parametrize("sub,where", [
    ({"topic": "spBv1.0/#", "format": "sparkplug", "type": "int64"}, "sources[0].subscriptions[0].type"),
    ({"topic": "a", "format": "metadata", "types": {"a": "bool"}}, "sources[0].subscriptions[0].type"),
    ({"topic": "a", "types": {"a": "integer"}}, "sources[0].subscriptions[0].types.a"),
    ({"topic": "a", "types": {"": "int64"}}, "sources[0].subscriptions[0].types"),
    ({"topic": "a", "metadata": {"unit": "a..b"}}, "sources[0].subscriptions[0].metadata.unit"),
    ({"topic": "a", "format": "metadata", "metadata": {"text": "range"}}, "sources[0].subscriptions[0].metadata.text"),
])
def test_type_and_metadata_options_are_checked(sub, where):
    with pytest.raises(ConfigError) as exc:
        parse({"appliance_id": "a1", "sources": [{"name": "m", "type": "mqtt", "subscriptions": [sub]}]}, env={})
    assert exc.value.path == where


# ------------------------------------------------------------------ retained metadata topics

META_SUBS = [
    {"topic": "sensors/+/meta", "format": "metadata", "point": "sensors/{1}/value",
     "metadata": {"unit": "eng.unit", "description": "desc", "type": "datatype"}},
    {"topic": "sensors/#"},
]


def router(subs=META_SUBS, state=None) -> Router:
    from edge.sources.mqtt.pointmeta import MetadataStore
    return Router([build(Subscription, s, f"s[{i}]") for i, s in enumerate(subs)], metadata=MetadataStore(state))


def parse_on(r: Router, topic: str, payload: bytes) -> list[Parsed]:
    return r.route(topic).parse(topic, payload)


def test_metadata_topics_give_later_readings_their_unit_and_type_instead_of_quarantine():
    r = router()
    before = parse_on(r, "sensors/t1/value", b'{"value": 40}')
    assert before == [Parsed("sensors/t1/value", 40.0, data_type="double")]
    meta = b'{"eng": {"unit": "degC"}, "desc": "Zone 1 temperature", "datatype": "integer", "min": 0, "max": 400}'
    assert parse_on(r, "sensors/t1/meta", meta) == []  # no reading, no quarantine
    assert r.metadata.changed
    (after,) = parse_on(r, "sensors/t1/value", b'{"value": 40}')
    assert after == Parsed("sensors/t1/value", 40, unit="degC", data_type="int64") and column(after) == "value_int"
    assert r.metadata.get("sensors/t1/value").description == "Zone 1 temperature"
    assert parse_on(r, "sensors/t2/value", b'{"value": 40}')[0].unit is None  # only the point it describes
    with pytest.raises(ParseError, match="declared int64"):
        parse_on(r, "sensors/t1/value", b'{"value": 40.5}')  # the device said integer
    # A unit in the reading's own payload wins; an emptied retained topic forgets the point's metadata.
    own = router([META_SUBS[0], {"topic": "sensors/#", "json": {"unit": "u"}}], state=r.metadata.snapshot())
    assert parse_on(own, "sensors/t1/value", b'{"value": 4, "u": "K"}')[0].unit == "K"
    assert parse_on(own, "sensors/t1/value", b'{"value": 4}')[0].unit == "degC"  # restored from the snapshot
    assert parse_on(own, "sensors/t1/meta", b"") == [] and own.metadata.get("sensors/t1/value") is None


def test_plain_text_metadata_topics_homie_style():
    r = router([
        {"topic": "homie/+/+/+/$unit", "format": "metadata", "point": "{1}/{2}/{3}", "metadata": {"text": "unit"}},
        {"topic": "homie/+/+/+/$datatype", "format": "metadata", "point": "{1}/{2}/{3}", "metadata": {"text": "type"}},
        {"topic": "homie/+/+/+", "format": "text", "point": "{1}/{2}/{3}"},
    ])
    assert parse_on(r, "homie/dev/heater/temp/$unit", "°C".encode()) == []
    assert parse_on(r, "homie/dev/heater/temp/$datatype", b"float") == []
    assert parse_on(r, "homie/dev/heater/temp", b"21.5") == [Parsed("dev/heater/temp", 21.5, unit="°C", data_type="double")]
    assert parse_on(r, "homie/dev/heater/temp/$unit", b"") == []  # one field cleared, the type stays
    assert parse_on(r, "homie/dev/heater/temp", b"21") == [Parsed("dev/heater/temp", 21.0, data_type="double")]


@pytest.mark.parametrize("payload,reason", [
    (b"[1, 2]", "metadata payload is a list, expected a JSON object"),
    (b'{"eng": {"unit": 5}}', "metadata field 'eng.unit' is not a string"),
    (b'{"datatype": "complex"}', "type 'complex' is not one of"),
    (b"{nope", "invalid JSON"),
])
def test_unusable_metadata_is_quarantined_with_the_reason(payload, reason):
    with pytest.raises(ParseError, match=re.escape(reason)):
        parse_on(router(), "sensors/t1/meta", payload)


def test_metadata_survives_a_restart_of_the_converter(tmp_path):
    """A persistent session does not get retained messages again: the collector keeps what it learnt."""
    from edge.sources.context import SourceContext
    from edge.sources.mqtt.convert import Converter
    from edge.sources.mqtt.pipeline import Msg
    from edge.sources.status import SourceStatus

    cfg = parse({"appliance_id": "a", "sources": [{"name": "m", "type": "mqtt", "subscriptions": META_SUBS}]},
                env={}).sources[0]

    def converter() -> Converter:
        return Converter(cfg, SourceContext("a", tmp_path, None, None, None, None, SourceStatus("m", "mqtt", None)))

    items, quarantines = converter().convert([Msg(1, 1, 1, b"sensors/t1/meta", b'{"eng": {"unit": "bar"}}', False, 1)])
    assert items == [] and quarantines == []
    assert json.loads((tmp_path / "mqtt-metadata.json").read_text()) == {"sensors/t1/value": {"unit": "bar"}}
    (item,), _ = converter().convert([Msg(1, 2, 1, b"sensors/t1/value", b'{"value": 3}', False, 2)])
    from edge.encode import decode
    assert decode(item[1]).unit == "bar" and decode(item[1]).data_type == "double"
