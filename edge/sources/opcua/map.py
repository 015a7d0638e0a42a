"""OPC-UA values, StatusCodes and timestamps -> the reading schema. Pure: no I/O.

What goes where (also in opcua/README.md):

- Boolean -> value_bool; SByte..Int64, UInt32 -> value_int; UInt64 above 2**63-1 -> value_json
  (encode.py refuses to wrap it); Float -> value_double rounded to the shortest decimal that
  reads back as the same float32 (0.1f stays 0.1, not 0.10000000149011612); Double -> value_double;
  String, XmlElement -> value_string; LocalizedText -> value_string (its text);
  DateTime -> value_string (ISO 8601, UTC, microseconds); ByteString -> value_string (base64);
  NodeId/ExpandedNodeId/QualifiedName/Guid/StatusCode -> value_string (their OPC-UA text form);
- arrays, matrices and ExtensionObjects (structures) -> value_json, built recursively with the
  same rules; an ExtensionObject the client could not decode (no type definition loaded) becomes
  ``{"type_id": "...", "body_base64": "..."}`` so nothing is dropped;
- NaN / +-Infinity -> value_json as a string (JSON has no NaN), done by encode.py;
- quality from the StatusCode's severity bits: Good / Uncertain / Bad; the raw 32-bit code goes
  to status_code unchanged (0 for Good); a Bad value is null;
- SourceTimestamp -> source_ts, ServerTimestamp -> server_ts (microseconds, UTC); a missing or
  "null" (1601-01-01) timestamp stays null: we never put our clock in place of the server's.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import math
import struct
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from edge.encode import BAD, GOOD, UNCERTAIN, encode_reading

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)
# OPC-UA's "no time": DateTime 0 decodes to 1601-01-01; anything before 1601-01-02 is treated as unset.
_NULL_BEFORE = datetime(1601, 1, 2, tzinfo=timezone.utc)
_F32 = struct.Struct("<f")


def quality(code: int) -> str:
    """Severity of a StatusCode: bits 31..30 are 00 Good, 01 Uncertain, 10/11 Bad (Part 4, 7.39)."""
    sev = (code >> 30) & 0x3
    if sev == 0:
        return GOOD
    if sev == 1:
        return UNCERTAIN
    return BAD


def ts_us(dt: datetime | None) -> int | None:
    """A DateTime as int microseconds since the Unix epoch (UTC); None for missing / null."""
    if dt is None:
        return None
    if dt.tzinfo is None:  # asyncua decodes aware UTC; naive values are UTC by OPC-UA definition
        dt = dt.replace(tzinfo=timezone.utc)
    if dt < _NULL_BEFORE:
        return None
    return (dt - _EPOCH) // _US


def us_to_datetime(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def float32(v: float) -> float:
    """The shortest decimal that round-trips to the same float32 (what the device meant)."""
    if not math.isfinite(v):
        return v
    packed = _F32.pack(v)
    for digits in (6, 7, 8, 9):
        cand = float(f"{v:.{digits}g}")
        if _F32.pack(cand) == packed:
            return cand
    return v


def type_name(variant_type: Any) -> str | None:
    """A VariantType's name (None for anything without one)."""
    name = getattr(variant_type, "name", None)
    return name if isinstance(name, str) else None


def plain(value: Any, variant_type: str | None = None) -> Any:
    """A decoded OPC-UA value as bool/int/float/str or a JSON-able list/dict (see module doc)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, enum.Enum):  # IntEnum subclasses int: check first, keep the symbolic name visible
        return value.name if not isinstance(value, int) else int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return float32(value) if variant_type == "Float" else value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [plain(v, variant_type) for v in value]
    cls = type(value).__name__
    if cls == "LocalizedText":
        return value.Text
    if cls in ("NodeId", "ExpandedNodeId"):
        return value.to_string()
    if cls == "QualifiedName":
        return value.to_string()
    if cls == "StatusCode":
        return int(value.value)
    if cls == "Variant":
        return plain(value.Value, type_name(value.VariantType))
    if cls == "DataValue":
        return {
            "value": plain(value.Value.Value if value.Value is not None else None),
            "status_code": int(value.StatusCode.value) if value.StatusCode is not None else 0,
            "source_ts": ts_us(value.SourceTimestamp),
        }
    if cls == "ExtensionObject":  # undecoded: keep the bytes so nothing is lost
        return {
            "type_id": value.TypeId.to_string() if value.TypeId is not None else None,
            "body_base64": base64.b64encode(value.Body or b"").decode("ascii"),
        }
    if dataclasses.is_dataclass(value):
        return {
            f.name: plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.name != "Encoding" and not f.name.startswith("_")
        }
    return str(value)


def structured_type_name(value: Any, variant_type: str | None) -> str | None:
    """data_type column: the VariantType name, or the structure's class name for ExtensionObjects."""
    if variant_type == "ExtensionObject" and value is not None:
        first = value[0] if isinstance(value, (list, tuple)) and value else value
        return type(first).__name__
    return variant_type


def reading_body(
    *,
    source: str,
    point: str,
    value: Any,
    variant_type: str | None,
    status_code: int,
    source_ts: int | None,
    server_ts: int | None,
    collected_ts: int,
    unit: str | None = None,
    is_array: bool = False,
) -> bytes:
    """encode_reading() for one OPC-UA data value; Bad values are null (the server's value is meaningless)."""
    q = quality(status_code)
    v = None if q == BAD else plain(value, variant_type)
    dtype = structured_type_name(value, variant_type)
    if is_array and dtype is not None:
        dtype += "[]"
    return encode_reading(
        source=source, protocol="opcua", point=point, value=v, quality=q, status_code=status_code,
        source_ts=source_ts, server_ts=server_ts, collected_ts=collected_ts, unit=unit, data_type=dtype,
    )


def datavalue_body(dv: Any, *, source: str, point: str, collected_ts: int, unit: str | None = None) -> bytes:
    """reading_body() for an asyncua ``ua.DataValue`` (subscription notification or history value)."""
    value, vtype, code, source_ts, server_ts = datavalue_fields(dv)
    return reading_body(
        source=source, point=point, value=value, variant_type=vtype, status_code=code,
        source_ts=source_ts, server_ts=server_ts, collected_ts=collected_ts, unit=unit,
        is_array=isinstance(value, (list, tuple)),
    )


def datavalue_fields(dv: Any) -> tuple[Any, str | None, int, int | None, int | None]:
    """(value, variant type name, status code, source_ts, server_ts) of an asyncua ``ua.DataValue``:
    the fields of the collector's records (edge/sources/opcua/fastpublish.py)."""
    variant = dv.Value
    value = variant.Value if variant is not None else None
    vtype = type_name(variant.VariantType) if variant is not None else None
    code = int(dv.StatusCode.value) if dv.StatusCode is not None else 0
    return value, vtype, code, ts_us(dv.SourceTimestamp), ts_us(dv.ServerTimestamp)


def value_key(value: Any) -> Any:
    """The value, or its repr when it cannot be hashed (arrays, structures): for fingerprints."""
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


def fingerprint(dv: Any) -> tuple[int | None, int, Any]:
    """(source_ts, status, value) of a DataValue: how the collector recognises a value it already has."""
    value, _, code, source_ts, _ = datavalue_fields(dv)
    return source_ts, code, value_key(value)


__all__ = [
    "datavalue_body", "datavalue_fields", "fingerprint", "float32", "plain", "quality", "reading_body",
    "structured_type_name", "ts_us", "type_name", "us_to_datetime", "value_key",
]
