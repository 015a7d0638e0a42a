"""Pure Sparkplug B decoding: topic namespace, metric values, alias tables from BIRTH messages.

Topic namespace (Sparkplug 3.0): ``spBv1.0/<group>/<TYPE>/<edge node>[/<device>]``.
DATA messages may name a metric only by its alias; the alias -> name table
comes from the node's NBIRTH and its devices' DBIRTHs (aliases are unique per
edge node). The table must survive a restart of the appliance: with a
persistent MQTT session we will not see those BIRTHs again, so ``Decoder``
reports when it changed and the collector saves ``snapshot()`` before it
acknowledges the BIRTH.
"""

from __future__ import annotations

import math
import struct
from typing import Any, NamedTuple

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import DecodeError

from edge.encode import BAD, GOOD, UNCERTAIN
from edge.pb.sparkplug_b_pb2 import Payload
from edge.sources.mqtt.parse import Parsed, ParseError

NAMESPACE = "spBv1.0"
DATA_TYPES = {
    "NBIRTH", "NDEATH", "DBIRTH", "DDEATH", "NDATA", "DDATA", "NCMD", "DCMD", "STATE",
}

TYPE_NAMES = [
    "Unknown", "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64", "Float", "Double",
    "Boolean", "String", "DateTime", "Text", "UUID", "DataSet", "Bytes", "File", "Template", "PropertySet",
    "PropertySetList", "Int8Array", "Int16Array", "Int32Array", "Int64Array", "UInt8Array", "UInt16Array",
    "UInt32Array", "UInt64Array", "FloatArray", "DoubleArray", "BooleanArray", "StringArray", "DateTimeArray",
]
T = {name: i for i, name in enumerate(TYPE_NAMES)}

# Which oneof field each datatype must use (spec 6.4.16).
_EXPECTED_FIELD = {
    **{T[n]: "int_value" for n in ("Int8", "Int16", "Int32", "UInt8", "UInt16", "UInt32")},
    **{T[n]: "long_value" for n in ("Int64", "UInt64", "DateTime")},
    T["Float"]: "float_value",
    T["Double"]: "double_value",
    T["Boolean"]: "boolean_value",
    **{T[n]: "string_value" for n in ("String", "Text", "UUID")},
    **{T[n]: "bytes_value" for n in ("Bytes", "File")},
    **{T[n]: "bytes_value" for n in TYPE_NAMES[22:]},
    T["DataSet"]: "dataset_value",
    T["Template"]: "template_value",
}

_ARRAY_FMT = {  # little-endian element format of the packed array types
    "Int8Array": "b", "Int16Array": "h", "Int32Array": "i", "Int64Array": "q",
    "UInt8Array": "B", "UInt16Array": "H", "UInt32Array": "I", "UInt64Array": "Q",
    "FloatArray": "f", "DoubleArray": "d", "DateTimeArray": "q",
}


class SpTopic(NamedTuple):
    group: str
    mtype: str
    node: str
    device: str | None

    @property
    def node_key(self) -> str:
        return f"{self.group}/{self.node}"

    @property
    def prefix(self) -> str:
        return f"{self.group}/{self.node}" + (f"/{self.device}" if self.device else "")


def parse_topic(topic: str) -> SpTopic | None:
    """None for Sparkplug topics that carry no readings (STATE); ParseError for non-Sparkplug topics."""
    parts = topic.split("/")
    if parts[0] != NAMESPACE:
        raise ParseError(f"topic {topic[:200]!r} is not in the {NAMESPACE} namespace")
    if len(parts) >= 2 and parts[1] == "STATE":
        return None
    if len(parts) not in (4, 5) or not all(parts[1:]):
        raise ParseError(f"topic {topic[:200]!r} is not spBv1.0/<group>/<type>/<node>[/<device>]")
    mtype = parts[2]
    if mtype not in DATA_TYPES:
        raise ParseError(f"unknown Sparkplug message type {mtype[:32]!r}")
    device = parts[4] if len(parts) == 5 else None
    if mtype.startswith("D") and device is None:
        raise ParseError(f"{mtype} without a device id in {topic[:200]!r}")
    if mtype.startswith("N") and device is not None:
        raise ParseError(f"{mtype} with a device id in {topic[:200]!r}")
    return SpTopic(parts[1], mtype, parts[3], device)


def _signed(v: int, bits: int) -> int:
    return v - (1 << bits) if v >= 1 << (bits - 1) else v


def _decode_array(tname: str, raw: bytes) -> list:
    if tname == "BooleanArray":
        # 4-byte little-endian count, then the bits packed MSB first.
        if len(raw) < 4:
            raise ParseError("BooleanArray shorter than its 4-byte count")
        (n,) = struct.unpack_from("<I", raw)
        if (n + 7) // 8 > len(raw) - 4:
            raise ParseError(f"BooleanArray says {n} values but has {len(raw) - 4} bytes")
        return [bool(raw[4 + i // 8] & (0x80 >> (i % 8))) for i in range(n)]
    if tname == "StringArray":
        if raw and not raw.endswith(b"\0"):
            raise ParseError("StringArray is not NUL-terminated")
        try:
            return [s.decode("utf-8") for s in raw[:-1].split(b"\0")] if raw else []
        except UnicodeDecodeError:
            raise ParseError("StringArray element is not valid UTF-8") from None
    fmt = _ARRAY_FMT[tname]
    size = struct.calcsize(fmt)
    if len(raw) % size:
        raise ParseError(f"{tname} length {len(raw)} is not a multiple of {size}")
    values = list(struct.unpack(f"<{len(raw) // size}{fmt}", raw))
    if fmt in "fd":
        values = [v if math.isfinite(v) else str(v) for v in values]
    return values


def _dataset(ds: Any) -> dict:
    rows = []
    for row in ds.rows:
        cells = []
        for el in row.elements:
            which = el.WhichOneof("value")
            cells.append(None if which is None or which == "extension_value" else getattr(el, which))
        rows.append(cells)
    return {"columns": list(ds.columns), "types": [_type_name(t) for t in ds.types], "rows": rows}


def _type_name(t: int) -> str:
    return TYPE_NAMES[t] if 0 <= t < len(TYPE_NAMES) else f"Type{t}"


def metric_value(m: Any, datatype: int, label: str) -> Any:
    """The Python value of a metric, checked against its datatype."""
    if m.is_null:
        return None
    which = m.WhichOneof("value")
    if which is None:
        return None
    expected = _EXPECTED_FIELD.get(datatype)
    if expected is not None and which != expected:
        raise ParseError(f"metric {label!r}: datatype {_type_name(datatype)} but the payload has {which}")
    raw = getattr(m, which)
    tname = _type_name(datatype)
    if tname in ("Int8", "Int16", "Int32"):
        return _signed(raw, 32)
    if tname == "Int64":
        return _signed(raw, 64)
    if tname in _ARRAY_FMT or tname in ("BooleanArray", "StringArray"):
        return _decode_array(tname, raw)
    if which == "dataset_value":
        return _dataset(raw)
    if which == "template_value":
        return MessageToDict(raw, preserving_proto_field_name=True)
    if which == "extension_value":
        raise ParseError(f"metric {label!r}: extension values are not supported")
    return raw


def _properties(m: Any) -> dict[str, Any]:
    if not m.HasField("properties"):
        return {}
    out = {}
    for k, pv in zip(m.properties.keys, m.properties.values):
        which = pv.WhichOneof("value")
        if which in ("int_value", "long_value", "float_value", "double_value", "boolean_value", "string_value"):
            out[k.lower()] = getattr(pv, which)
    return out


def _quality(props: dict[str, Any]) -> tuple[str, int | None]:
    q = props.get("quality")
    if not isinstance(q, int) or isinstance(q, bool):
        return GOOD, None
    # Ignition/OPC DA codes: 192 good, 64..127 uncertain, everything else bad (0 = bad, 500 = stale).
    if 192 <= q < 256:
        return GOOD, q
    if 64 <= q < 128:
        return UNCERTAIN, q
    return BAD, q


def _ms_to_us(ms: int) -> int | None:
    # 0 means "not set"; anything past 2200 is garbage rather than a time.
    return ms * 1000 if 0 < ms < 7_258_118_400_000 else None


class Decoder:
    """Stateful only in its alias/type tables; everything else is a pure function of the input."""

    def __init__(self, state: dict | None = None):
        # node_key -> {"aliases": {alias(str): [device|None, name, datatype]}, "types": {device/name: datatype}}
        self.nodes: dict[str, dict[str, dict]] = {}
        if state:
            for key, node in state.get("nodes", {}).items():
                self.nodes[key] = {
                    "aliases": {str(a): list(v) for a, v in node.get("aliases", {}).items()},
                    "types": dict(node.get("types", {})),
                }

    def snapshot(self) -> dict:
        return {"version": 1, "nodes": self.nodes}

    def parse(self, topic: str, payload: bytes) -> tuple[list[Parsed], bool]:
        """(readings, alias_table_changed)."""
        t = parse_topic(topic)
        if t is None or t.mtype in ("NCMD", "DCMD"):
            return [], False  # host state and commands to devices are not process data
        if t.mtype in ("NDEATH", "DDEATH"):
            # NDEATH carries only bdSeq; the fact itself is worth a row: the device went offline.
            return [Parsed(f"{t.prefix}/$state", "OFFLINE", BAD, None, None, None, t.mtype)], False
        try:
            p = Payload.FromString(payload)
        except (DecodeError, RuntimeError, ValueError) as exc:
            raise ParseError(f"not a Sparkplug B payload: {exc}") from None
        changed = False
        node = self.nodes.get(t.node_key)
        if t.mtype == "NBIRTH":
            node = {"aliases": {}, "types": {}}  # a new session of the node: forget the old aliases
            self.nodes[t.node_key] = node
            changed = True
        elif t.mtype == "DBIRTH":
            if node is None:
                node = self.nodes[t.node_key] = {"aliases": {}, "types": {}}
            changed = True
        birth = t.mtype.endswith("BIRTH")
        payload_ts = _ms_to_us(p.timestamp) if p.HasField("timestamp") else None
        out: list[Parsed] = []
        for m in p.metrics:
            name, datatype = self._identify(m, t, node, birth)
            label = name
            value = metric_value(m, datatype, label)
            props = _properties(m)
            quality, status = _quality(props)
            unit = props.get("engunit") or props.get("unit") or props.get("engineeringunits")
            ts = _ms_to_us(m.timestamp) if m.HasField("timestamp") else payload_ts
            out.append(Parsed(
                f"{t.prefix}/{name}", value, quality, status, ts,
                unit if isinstance(unit, str) else None, _type_name(datatype),
            ))
        if birth:
            out.append(Parsed(f"{t.prefix}/$state", "ONLINE", GOOD, None, payload_ts, None, t.mtype))
        return out, changed

    def _identify(self, m: Any, t: SpTopic, node: dict | None, birth: bool) -> tuple[str, int]:
        dev = t.device or ""
        if m.HasField("name") and m.name:
            name = m.name
            if m.HasField("datatype"):
                datatype = m.datatype
            elif node is not None and f"{dev}/{name}" in node["types"]:
                datatype = node["types"][f"{dev}/{name}"]
            else:
                datatype = 0
            if birth and node is not None:
                node["types"][f"{dev}/{name}"] = datatype
                if m.HasField("alias"):
                    node["aliases"][str(m.alias)] = [t.device, name, datatype]
            return name, datatype
        if not m.HasField("alias"):
            raise ParseError("metric has neither a name nor an alias")
        entry = node["aliases"].get(str(m.alias)) if node is not None else None
        if entry is None:
            raise ParseError(f"unknown metric alias {m.alias} for edge node {t.node_key} (no BIRTH defines it)")
        return entry[1], (m.datatype if m.HasField("datatype") else entry[2])
