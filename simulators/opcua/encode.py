"""The simulator's Publish responses: data changes encoded without asyncua's generic encoder.

asyncua encodes every MonitoredItemNotification through its generic dataclass serializer
(a DataValue, its Variant, two DateTime conversions): about a quarter of a simulator's CPU
at 30k changes/s (py-spy). ``encode_datachange`` writes the same bytes with ``struct`` for
the common case: scalar values of the numeric types, Boolean, String and DateTime, no
picoseconds, no DiagnosticInfos. Every other DataValue goes to asyncua's serializer, and a
notification it cannot take whole goes to asyncua entirely.

``install()`` routes ``ua_binary.struct_to_binary`` (which asyncua's ExtensionObject encoder
calls for each notification) through it; anything that is not a DataChangeNotification goes
to the original untouched. asyncua is pinned (pyproject.toml);
tests/opcua/test_simulator.py checks that both encoders give the same bytes.
"""

from __future__ import annotations

import struct
from typing import Any

from asyncua import ua
from asyncua.ua import ua_binary

_DCN = ua.DataChangeNotification
_I32 = struct.Struct("<i")
_HANDLE_MASK = struct.Struct("<IB")
_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")
_SCALARS: dict[Any, struct.Struct] = {
    vt: struct.Struct("<B" + fmt)
    for vt, fmt in (
        (ua.VariantType.Boolean, "?"), (ua.VariantType.SByte, "b"), (ua.VariantType.Byte, "B"),
        (ua.VariantType.Int16, "h"), (ua.VariantType.UInt16, "H"), (ua.VariantType.Int32, "i"),
        (ua.VariantType.UInt32, "I"), (ua.VariantType.Int64, "q"), (ua.VariantType.UInt64, "Q"),
        (ua.VariantType.Float, "f"), (ua.VariantType.Double, "d"),
    )
}
_STRING, _DATETIME = ua.VariantType.String, ua.VariantType.DateTime
_original = ua_binary.struct_to_binary


class _Ticks:
    """datetime -> OPC-UA DateTime ticks, remembering the last one (a tick's writes share their time)."""

    __slots__ = ("dt", "ticks")

    def __init__(self) -> None:
        self.dt: Any = None
        self.ticks = 0

    def __call__(self, dt: Any) -> int:
        if dt is not self.dt:
            self.ticks = ua.datetime_to_win_epoch(dt)
            self.dt = dt
        return self.ticks


def _variant(var: Any, ticks: _Ticks) -> bytes | None:
    value = var.Value
    if var.is_array or isinstance(value, (list, tuple)):
        return None
    vt = var.VariantType
    st = _SCALARS.get(vt)
    if st is not None:
        return st.pack(vt.value, value)
    if vt is _STRING:
        if value is None:
            return b"\x0c" + _I32.pack(-1)
        raw = value.encode(ua_binary.get_string_encoding(), errors="surrogateescape")
        return b"\x0c" + _I32.pack(len(raw)) + raw
    if vt is _DATETIME and value is not None:
        return b"\x0d" + _I64.pack(ticks(value))
    return None


def _datavalue(handle: int, dv: Any, ticks: _Ticks) -> bytes | None:
    if dv.SourcePicoseconds is not None or dv.ServerPicoseconds is not None:
        return None
    mask = 0
    parts = []
    if dv.Value is not None:
        body = _variant(dv.Value, ticks)
        if body is None:
            return None
        mask |= 0x01
        parts.append(body)
    if dv.StatusCode is not None:
        mask |= 0x02
        parts.append(_U32.pack(dv.StatusCode.value))
    if dv.SourceTimestamp is not None:
        mask |= 0x04
        parts.append(_I64.pack(ticks(dv.SourceTimestamp)))
    if dv.ServerTimestamp is not None:
        mask |= 0x08
        parts.append(_I64.pack(ticks(dv.ServerTimestamp)))
    return _HANDLE_MASK.pack(handle, mask) + b"".join(parts)


def encode_datachange(dcn: Any) -> bytes | None:
    """asyncua's bytes for ``dcn``, or None when asyncua should encode it."""
    items = dcn.MonitoredItems
    if items is None or dcn.DiagnosticInfos is None or dcn.DiagnosticInfos:
        return None
    serialize_dv = ua_binary.create_dataclass_serializer(ua.DataValue)
    ticks = _Ticks()
    parts = [_I32.pack(len(items))]
    append = parts.append
    try:
        for mi in items:
            one = _datavalue(mi.ClientHandle, mi.Value, ticks)
            append(one if one is not None else _U32.pack(mi.ClientHandle) + serialize_dv(mi.Value))
    except (struct.error, TypeError, AttributeError, OverflowError, UnicodeError):
        return None  # a value that does not fit its type: asyncua raises its own, descriptive error
    append(_I32.pack(0))  # DiagnosticInfos: none
    return b"".join(parts)


def struct_to_binary(obj: Any) -> bytes:
    if obj.__class__ is _DCN:
        out = encode_datachange(obj)
        if out is not None:
            return out
    return _original(obj)


def install() -> None:
    """Idempotent; affects this process's asyncua."""
    ua_binary.struct_to_binary = struct_to_binary
