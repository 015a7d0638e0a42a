"""MQTT payload formats and Sparkplug B: a reading list or ParseError, nothing else."""

from __future__ import annotations

import json

from hypothesis import example, given
from hypothesis import strategies as st

from edge.configtypes import build
from edge.pb.sparkplug_b_pb2 import Payload
from edge.sources.mqtt.parse import Mapper, ParseError, Subscription, parse_quality, parse_timestamp
from edge.sources.mqtt.pointmeta import MetadataStore
from edge.sources.mqtt.sparkplug import TYPE_NAMES, Decoder

from .profile import fuzz
from .strategies import json_texts, json_values, nested

_MAPPERS = [
    Mapper(build(Subscription, {"topic": "#", **kw}, "sub")) for kw in (
        {"format": "json"},
        {"format": "json", "json": {"value": "$"}},
        {"format": "json", "json": {"value": "v.0.x", "timestamp": "t", "quality": "q", "unit": "u", "structured": True}},
        {"format": "json", "point": "{0}/{field}", "json": {"value": "value", "point": "name", "timestamp": "ts",
                                                            "timestamp_format": "iso8601"}},
        {"format": "json", "json": {"timestamp": "timestamp", "timestamp_format": "epoch_ns"}},
        {"format": "number"},
        {"format": "text", "point": "{2}"},
    )
]
_topics = st.one_of(st.text(max_size=30), st.sampled_from(["a/b/c", "a", "", "/", "a//b", "plant/line1/temp"]))


@fuzz
@given(st.sampled_from(range(len(_MAPPERS))), _topics, st.one_of(json_texts(), st.binary(max_size=100),
                                                                 json_values.map(lambda v: json.dumps(v).encode())))
@example(0, "a/b", b"[" * 1000 + b"]" * 1000)
@example(0, "a/b", b'{"value": ' + b"9" * 5000 + b"}")
@example(5, "a/b", b"9" * 5000)
def test_payloads_parse_or_refuse(i, topic, payload):
    try:
        out = _MAPPERS[i].parse(topic, payload)
    except ParseError as exc:
        assert str(exc)
    else:
        assert len(out) == 1 and isinstance(out[0].point, str)


_META_POINT = "{1}/{2}"  # meta/a/b is about the point a/b (the value topics' default point: the topic)


def _one_source(store: MetadataStore) -> list[Mapper]:
    """The mappers of one source sharing its metadata store: metadata topics (JSON and plain text) declare
    units and types that the value subscriptions (some with their own declared types) then apply."""
    subs = (
        {"topic": "meta/#", "format": "metadata", "point": _META_POINT, "metadata": {"type": "type", "unit": "u.0"}},
        {"topic": "meta/#", "format": "metadata", "point": _META_POINT, "metadata": {"text": "type"}},
        {"topic": "meta/#", "format": "metadata", "point": _META_POINT, "metadata": {"text": "unit"}},
        {"topic": "#", "format": "json", "types": {"a/*": "int64", "a/b": "bool", "*c": "string"}},
        {"topic": "#", "format": "text", "type": "int64"},
        {"topic": "#", "format": "number", "type": "bool"},
        {"topic": "#", "format": "json", "json": {"value": "$"}, "type": "string"},
        {"topic": "#", "format": "text"},
    )
    return [Mapper(build(Subscription, kw, "sub"), store) for kw in subs]


_declared = st.sampled_from(["int64", "integer", "float", "boolean", "string", "enum", "INT16", " real ", "date", ""])
_meta_payloads = st.one_of(
    json_texts(), _declared.map(str.encode),
    st.builds(lambda t, u: json.dumps({"type": t, "u": [u]}).encode(), st.one_of(_declared, json_values), json_values),
)


@fuzz
@given(st.lists(st.tuples(st.integers(0, 7), st.sampled_from(["a/b", "a/x", "b/c", "a"]),
                          st.one_of(_meta_payloads, json_texts(), st.binary(max_size=40))), min_size=1, max_size=8),
       st.one_of(st.none(), json_values))
@example([(1, "a/b", b"integer"), (7, "a/b", b"1e999")], None)
@example([(0, "a/b", b'{"type": "int16"}'), (3, "a/b", b'{"value": "99999999999999999999999"}')], None)
def test_metadata_and_declared_types_parse_or_refuse(messages, saved):
    """A metadata topic sets a point's type; the next value of that point is converted to it or refused."""
    store = MetadataStore(saved)  # the saved state, as loaded at start: anything on disk
    mappers = _one_source(store)
    typed_seen: list[str] = []
    for i, topic, payload in messages:
        m = mappers[i]
        try:
            out = m.parse(("meta/" if m.format == "metadata" else "") + topic, payload)
        except ParseError as exc:
            assert str(exc)
        else:
            assert all(isinstance(r.point, str) for r in out)
            assert all(r.data_type in (None, "double", "int64", "bool", "string", "json") for r in out)
            if m.format == "metadata" and (meta := store.get(topic)) is not None and meta.type:
                typed_seen.append(meta.type)
    MetadataStore(json.loads(json.dumps(store.snapshot())))  # what is saved loads again
    assert all(t in ("double", "int64", "bool", "string") for t in typed_seen)


@fuzz
@given(json_values, st.sampled_from(["auto", "epoch_s", "epoch_ms", "epoch_us", "epoch_ns", "iso8601"]))
@example("9" * 5000, "auto")
@example(1e308, "epoch_ns")
@example(float("nan"), "auto")
def test_timestamps_and_qualities_parse_or_refuse(raw, fmt):
    for call in (lambda: parse_timestamp(raw, fmt), lambda: parse_quality(raw)):
        try:
            call()
        except ParseError:
            pass


# --- Sparkplug B

_ONEOF = ["int_value", "long_value", "float_value", "double_value", "boolean_value", "string_value", "bytes_value"]


@st.composite
def _metric(draw) -> dict:
    m: dict = {}
    if draw(st.booleans()):
        m["name"] = draw(st.text(max_size=10))
    if draw(st.booleans()):
        m["alias"] = draw(st.integers(0, 2**64 - 1))
    if draw(st.booleans()):
        m["datatype"] = draw(st.integers(0, len(TYPE_NAMES) + 3))
    if draw(st.booleans()):
        m["timestamp"] = draw(st.integers(0, 2**64 - 1))
    m["is_null"] = draw(st.booleans())
    field = draw(st.sampled_from(_ONEOF + ["none", "dataset", "template", "properties"]))
    if field == "int_value":
        m[field] = draw(st.integers(0, 2**32 - 1))
    elif field == "long_value":
        m[field] = draw(st.integers(0, 2**64 - 1))
    elif field in ("float_value", "double_value"):
        m[field] = draw(st.floats(width=32 if field == "float_value" else 64))
    elif field == "boolean_value":
        m[field] = draw(st.booleans())
    elif field == "string_value":
        m[field] = draw(st.text(max_size=10))
    elif field == "bytes_value":
        m[field] = draw(st.binary(max_size=40))
    elif field == "dataset":
        m["dataset_value"] = {"num_of_columns": draw(st.integers(0, 5)), "columns": ["a", "b"],
                              "types": draw(st.lists(st.integers(0, 40), max_size=3)),
                              "rows": [{"elements": [{"int_value": 1}, {"string_value": "x"}, {}]}]}
    elif field == "template":
        m["template_value"] = {"template_ref": draw(st.text(max_size=5)), "metrics": [{"name": "x", "int_value": 3}]}
    elif field == "properties":
        m["properties"] = {"keys": ["Quality", "engUnit"], "values": [
            {"type": 3, draw(st.sampled_from(["int_value", "long_value"])): draw(st.integers(0, 2**31)),},
            {"type": 12, "string_value": draw(st.text(max_size=4))}]}
    return m


@st.composite
def _sparkplug_payloads(draw) -> bytes:
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=200))
    p = Payload()
    if draw(st.booleans()):
        p.timestamp = draw(st.integers(0, 2**64 - 1))
    for m in draw(st.lists(_metric(), max_size=4)):
        metric = p.metrics.add()
        for k, v in m.items():
            if isinstance(v, dict):
                _fill(getattr(metric, k), v)
            else:
                setattr(metric, k, v)
    raw = p.SerializeToString()
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(raw)))
        raw = raw[:cut] + draw(st.binary(max_size=8))
    return raw


def _fill(msg, values: dict) -> None:
    from google.protobuf.json_format import ParseDict

    ParseDict(values, msg)


_SP_TOPICS = st.one_of(
    st.builds(lambda t, dev: f"spBv1.0/g/{t}/node" + (f"/{dev}" if dev else ""),
              st.sampled_from(["NBIRTH", "DBIRTH", "NDATA", "DDATA", "NDEATH", "DDEATH", "NCMD", "STATE", "XDATA"]),
              st.sampled_from(["", "dev1"])),
    st.text(max_size=30), st.sampled_from(["spBv1.0", "spBv1.0/g", "spBv1.0//NDATA/", "spBv1.0/g/NDATA/n/d/x"]),
)


@fuzz
@given(st.lists(st.tuples(_SP_TOPICS, _sparkplug_payloads()), min_size=1, max_size=4))
def test_sparkplug_messages_decode_or_refuse(messages):
    decoder = Decoder()  # a sequence of messages: BIRTH tables built by one are used by the next
    for topic, payload in messages:
        try:
            readings, _changed = decoder.parse(topic, payload)
        except ParseError as exc:
            assert str(exc)
        else:
            assert all(isinstance(r.point, str) for r in readings)
    Decoder(json.loads(json.dumps(decoder.snapshot())))  # the saved alias table loads again
