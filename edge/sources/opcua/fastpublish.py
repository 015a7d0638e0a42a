"""Publish responses, with their data changes decoded straight into records. Pure: no I/O.

asyncua decodes each MonitoredItemNotification through its generic dataclass decoder: a
DataValue, a Variant whose ``__post_init__`` re-checks its type, two datetimes, about 8 us
per value and two thirds of the collector's CPU under load (py-spy, ops/bench_opcua.py).
The collector needs six plain fields of each. ``decode_publish_response`` parses a Publish
response with asyncua's own decoders for everything but the DataChangeNotification bodies,
and reads those with ``struct`` into records::

    (client_handle, value, variant_type, status_code, source_ts, server_ts)

with exactly what asyncua's objects give through ``map``: ``value`` as asyncua decodes
it, ``variant_type`` its VariantType name ("Null" when the DataValue has no value),
``status_code`` the raw code (0 when absent), the timestamps as ``ts_us()`` makes them (int
microseconds since 1970 UTC, None when absent or OPC-UA's null time). Scalars of the numeric
types, Boolean, String and DateTime are read here; any other Variant (arrays, matrices,
structures, LocalizedText, NodeIds...) is decoded by asyncua's ``variant_from_binary`` at the
same offset. A DataValue's fields are read in the order of OPC-UA Part 6, 5.2.2.17 (source
picoseconds before the server timestamp); asyncua 2.1.0 reads both picoseconds after both
timestamps, so a server sending picoseconds was mis-read before.

tests/opcua/test_fastpublish.py checks every kind against asyncua's decoder, and truncated
or corrupt bodies. ``records_from_notification`` makes the same records from an asyncua
``DataChangeNotification`` (the fallback, and HistoryRead-free tests).
"""

from __future__ import annotations

import struct
from typing import Any

from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua import ua_binary
from asyncua.ua.ua_binary import extensionobject_from_binary, from_binary, nodeid_from_binary, struct_from_binary

from edge.sources.opcua.map import datavalue_fields, ts_us, type_name

_DCN = ua.ObjectIds.DataChangeNotification_Encoding_DefaultBinary
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")
_HEAD = struct.Struct("<IB")  # ClientHandle, DataValue encoding mask

# Variant built-in type id -> (struct, VariantType name) for fixed-size scalars.
_SCALARS: dict[int, tuple[struct.Struct, str]] = {
    int(vt): (struct.Struct(fmt), vt.name)
    for vt, fmt in (
        (ua.VariantType.Boolean, "<?"), (ua.VariantType.SByte, "<b"), (ua.VariantType.Byte, "<B"),
        (ua.VariantType.Int16, "<h"), (ua.VariantType.UInt16, "<H"), (ua.VariantType.Int32, "<i"),
        (ua.VariantType.UInt32, "<I"), (ua.VariantType.Int64, "<q"), (ua.VariantType.UInt64, "<Q"),
        (ua.VariantType.Float, "<f"), (ua.VariantType.Double, "<d"),
    )
}
_NULL, _STRING, _DATETIME = int(ua.VariantType.Null), int(ua.VariantType.String), int(ua.VariantType.DateTime)

# DateTime (100 ns ticks since 1601) -> ts_us() of what asyncua makes of it, in integer arithmetic.
_MAX_TICKS = ua.uatypes.MAX_OPC_FILETIME
_MAX_US = ts_us(ua.win_epoch_to_datetime(_MAX_TICKS))
_NULL_TICKS = 86_400 * 10_000_000  # ts_us() treats anything before 1601-01-02 as unset
_EPOCH_US = 11_644_473_600 * 1_000_000  # 1601-01-01 -> 1970-01-01


class DataChanges:
    """A DataChangeNotification as records (see the module doc); DiagnosticInfos are not decoded."""

    __slots__ = ("items",)

    def __init__(self, items: list[tuple]):
        self.items = items

    def __repr__(self) -> str:
        return f"DataChanges({len(self.items)} items)"


def _ts(ticks: int) -> int | None:
    if ticks >= _MAX_TICKS:
        return _MAX_US
    if ticks < _NULL_TICKS:
        return None
    return ticks // 10 - _EPOCH_US


def decode_datachange(raw: bytes | memoryview) -> list[tuple]:
    """The MonitoredItems of one DataChangeNotification body, as records."""
    count = _I32.unpack_from(raw, 0)[0]
    pos = 4
    end = len(raw)
    out: list[tuple] = []
    append = out.append
    scalars = _SCALARS
    encoding = ua_binary.get_string_encoding()
    for _ in range(count):
        handle, mask = _HEAD.unpack_from(raw, pos)
        pos += 5
        value = None
        vtype = "Null"
        status = 0
        src = srv = None
        if mask & 0x01:
            enc = raw[pos]
            t = enc & 0x3F
            plain = not enc & 0xC0  # no array, no dimensions
            scalar = scalars.get(t) if plain else None
            if scalar is not None:
                st, vtype = scalar
                value = st.unpack_from(raw, pos + 1)[0]
                pos += 1 + st.size
            elif plain and t == _STRING and (n := _I32.unpack_from(raw, pos + 1)[0]) >= -1:
                pos += 5
                vtype = "String"
                if n >= 0:
                    if pos + n > end:
                        raise ValueError(f"String of {n} bytes runs past the end of the body")
                    value = bytes(raw[pos:pos + n]).decode(encoding, errors="surrogateescape")
                    pos += n
            elif plain and t == _DATETIME:
                value = ua.win_epoch_to_datetime(_I64.unpack_from(raw, pos + 1)[0])
                vtype = "DateTime"
                pos += 9
            elif plain and t == _NULL:
                pos += 1
            else:
                buf = Buffer(raw, pos)
                variant = ua_binary.variant_from_binary(buf)
                pos = buf.cur_pos
                value, vtype = variant.Value, type_name(variant.VariantType)
        if mask & 0x02:
            status = _U32.unpack_from(raw, pos)[0]
            pos += 4
        if mask & 0x04:
            src = _ts(_I64.unpack_from(raw, pos)[0])
            pos += 8
        if mask & 0x10:  # SourcePicoseconds
            pos += 2
        if mask & 0x08:
            srv = _ts(_I64.unpack_from(raw, pos)[0])
            pos += 8
        if mask & 0x20:  # ServerPicoseconds
            pos += 2
        if pos > end:
            raise ValueError("DataValue runs past the end of the body")
        append((handle, value, vtype, status, src, srv))
    return out


def records_from_notification(dcn: ua.DataChangeNotification) -> list[tuple]:
    """The same records from asyncua's decoded objects."""
    return [(mi.ClientHandle, *datavalue_fields(mi.Value)) for mi in dcn.MonitoredItems]


def _notification(data: Buffer) -> Any:
    """One NotificationData ExtensionObject: DataChanges for data changes, else asyncua's object."""
    peek = data.copy()
    typeid = nodeid_from_binary(peek)
    if typeid.NamespaceIndex != 0 or typeid.Identifier != _DCN or type(typeid) is not ua.NodeId:
        return extensionobject_from_binary(data)
    flags = ord(peek.read(1))
    length = _I32.unpack(peek.read(4))[0] if flags & 1 else 0
    if length < 1:
        return extensionobject_from_binary(data)  # asyncua's answer for an empty body (an error)
    raw = peek.read(length)
    data.skip(peek.cur_pos - data.cur_pos)
    return DataChanges(decode_datachange(raw))


def decode_publish_response(data: Buffer) -> ua.PublishResponse:
    """A PublishResponse whose DataChangeNotifications are DataChanges."""
    typeid = nodeid_from_binary(data)
    header = struct_from_binary(ua.ResponseHeader, data)
    sub_id = ua_binary.Primitives.UInt32.unpack(data)
    available = from_binary(list[ua.UInt32], data)
    more = ua_binary.Primitives.Boolean.unpack(data)
    seq = ua_binary.Primitives.UInt32.unpack(data)
    published = ua_binary.Primitives.DateTime.unpack(data)
    n = ua_binary.Primitives.Int32.unpack(data)
    notifications = [_notification(data) for _ in range(n)]
    results = from_binary(list[ua.StatusCode], data)
    diagnostics = from_binary(list[ua.DiagnosticInfo], data)
    message = ua.NotificationMessage(SequenceNumber=seq, PublishTime=published, NotificationData=notifications)
    result = ua.PublishResult(
        SubscriptionId=sub_id, AvailableSequenceNumbers=available or [], MoreNotifications=more,
        NotificationMessage=message, Results=results or [], DiagnosticInfos=diagnostics or [],
    )
    return ua.PublishResponse(TypeId=typeid, ResponseHeader=header, Parameters=result)


__all__ = ["DataChanges", "decode_datachange", "decode_publish_response", "records_from_notification"]
