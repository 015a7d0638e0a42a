"""edge/sources/opcua/fastpublish.py decodes Publish responses into exactly what asyncua's decoder gives.

Responses are encoded with asyncua's own encoder; both decoders read the same bytes; the
records must be equal field for field (values compared with their types, NaN by bits).
"""

from __future__ import annotations

import asyncio
import logging
import math
import struct
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua import ua_binary
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.sources.opcua.fastpublish import DataChanges, decode_datachange, decode_publish_response, records_from_notification
from edge.sources.opcua.subscribe import use_fast_publish

T0 = datetime(2026, 11, 24, 3, 0, 0, 123456, tzinfo=timezone.utc)
VT = ua.VariantType


def _dv(value, vt, status=0, src=T0, srv=T0 + timedelta(milliseconds=5), **kw):
    return ua.DataValue(ua.Variant(value, vt), StatusCode=ua.StatusCode(status), SourceTimestamp=src,
                        ServerTimestamp=srv, **kw)


def _response(dvs, *, extra=(), seq=7, sub_id=3) -> bytes:
    dcn = ua.DataChangeNotification(
        MonitoredItems=[ua.MonitoredItemNotification(ClientHandle=i + 1, Value=dv) for i, dv in enumerate(dvs)])
    resp = ua.PublishResponse()
    resp.Parameters.SubscriptionId = sub_id
    resp.Parameters.AvailableSequenceNumbers = [seq - 1, seq]
    resp.Parameters.MoreNotifications = False
    resp.Parameters.NotificationMessage = ua.NotificationMessage(
        SequenceNumber=seq, PublishTime=T0, NotificationData=[dcn, *extra])
    return ua_binary.struct_to_binary(resp)


def _slow(blob: bytes):
    return ua_binary.struct_from_binary(ua.PublishResponse, Buffer(blob))


def _same(a, b) -> bool:
    """Equal and of the same type, recursively; NaN equals NaN of the same bits."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _check(dvs, **kw):
    blob = _response(dvs, **kw)
    slow = _slow(blob)
    fast = decode_publish_response(Buffer(blob))
    want = records_from_notification(slow.Parameters.NotificationMessage.NotificationData[0])
    got = fast.Parameters.NotificationMessage.NotificationData[0]
    assert type(got) is DataChanges
    assert len(got.items) == len(want) == len(dvs)
    for g, w in zip(got.items, want):
        assert _same(g, w), (g, w)
    return fast, slow


SCALARS = [
    (True, VT.Boolean), (False, VT.Boolean), (-128, VT.SByte), (127, VT.SByte), (0, VT.Byte), (255, VT.Byte),
    (-32768, VT.Int16), (65535, VT.UInt16), (-(2**31), VT.Int32), (2**32 - 1, VT.UInt32),
    (-(2**63), VT.Int64), (2**63 - 1, VT.Int64), (2**64 - 1, VT.UInt64), (0.1, VT.Float), (-0.0, VT.Float),
    (float("inf"), VT.Float), (float("nan"), VT.Double), (1e308, VT.Double), (-0.0, VT.Double),
    ("Läuft", VT.String), ("", VT.String), (None, VT.String), ("\U0001f525 ok", VT.String),
    (T0, VT.DateTime), (datetime(1601, 1, 1, tzinfo=timezone.utc), VT.DateTime),
    (None, VT.Null),
]
OTHERS = [  # decoded by asyncua's variant_from_binary inside the fast decoder
    ([1.5, 2.5], VT.Double), ([[1, 2], [3, 4]], VT.Int32), (["a", None], VT.String), ([], VT.Boolean),
    (b"\x00\xff", VT.ByteString), (ua.LocalizedText("Auto", "en"), VT.LocalizedText), (ua.NodeId("x", 2), VT.NodeId),
    (ua.QualifiedName("Temp", 3), VT.QualifiedName), (uuid.UUID(int=7), VT.Guid), (ua.StatusCode(0x80340000), VT.StatusCode),
    (ua.Argument(Name="a", DataType=ua.NodeId(11)), VT.ExtensionObject), (ua.XmlElement("<a/>"), VT.XmlElement),
    (ua.Variant(5, VT.Int16), VT.Variant), ([T0, T0], VT.DateTime),
]


@pytest.mark.parametrize("value,vt", SCALARS + OTHERS, ids=[f"{vt.name}-{i}" for i, (_, vt) in enumerate(SCALARS + OTHERS)])
def test_each_kind_as_asyncua_decodes_it(value, vt):
    _check([_dv(value, vt)])


def test_a_mixed_response_and_everything_around_the_data_changes():
    dvs = [_dv(v, vt, status=s) for (v, vt), s in zip(SCALARS + OTHERS, [0, 0x40940000, 0x808A0000] * 20)]
    status = ua.StatusChangeNotification(Status=ua.StatusCode(ua.StatusCodes.BadTimeout))
    fast, slow = _check(dvs, extra=[status])
    assert fast.TypeId == slow.TypeId
    assert fast.ResponseHeader == slow.ResponseHeader
    fp, sp = fast.Parameters, slow.Parameters
    assert (fp.SubscriptionId, fp.AvailableSequenceNumbers, fp.MoreNotifications) == (3, [6, 7], False)
    assert (sp.SubscriptionId, list(sp.AvailableSequenceNumbers), sp.MoreNotifications) == (3, [6, 7], False)
    fm, sm = fp.NotificationMessage, sp.NotificationMessage
    assert (fm.SequenceNumber, fm.PublishTime) == (sm.SequenceNumber, sm.PublishTime) == (7, T0)
    assert fm.NotificationData[1] == sm.NotificationData[1] == status


def test_missing_fields_status_and_timestamps():
    cases = [
        ua.DataValue(),  # no value: a Null variant, Good
        ua.DataValue(ua.Variant(1.0, VT.Double)),  # no status, no timestamps
        ua.DataValue(ua.Variant(1, VT.Int32), StatusCode=ua.StatusCode(0x80000000)),
        ua.DataValue(ua.Variant(None, VT.Null), StatusCode=ua.StatusCode(0x808A0000), ServerTimestamp=T0),
        _dv(2, VT.Int32, src=datetime(1601, 1, 1, 12, tzinfo=timezone.utc)),  # before 1601-01-02: unset
        _dv(2, VT.Int32, src=datetime(1601, 1, 2, tzinfo=timezone.utc)),  # the first time that counts
        _dv(2, VT.Int32, src=datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)),  # asyncua's clamp
        _dv(2, VT.Int32, src=datetime(1970, 1, 1, tzinfo=timezone.utc)),
    ]
    fast, _ = _check(cases)
    items = fast.Parameters.NotificationMessage.NotificationData[0].items
    assert items[0] == (1, None, "Null", 0, None, None)
    assert items[4][4] is None and items[5][4] == -11644387200 * 10**6 and items[7][4] == 0


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(
    st.tuples(st.booleans(), st.just(VT.Boolean)),
    st.tuples(st.integers(-(2**31), 2**31 - 1), st.just(VT.Int32)),
    st.tuples(st.integers(0, 2**64 - 1), st.just(VT.UInt64)),
    st.tuples(st.floats(width=32), st.just(VT.Float)),
    st.tuples(st.floats(), st.just(VT.Double)),
    st.tuples(st.text(), st.just(VT.String)),
    st.tuples(st.lists(st.floats(allow_nan=False), max_size=4), st.just(VT.Double)),
), min_size=1, max_size=20), st.integers(0, 2**32 - 1),
    st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), st.one_of(st.none(), st.integers(0, 2**63 - 1)))
def test_random_values_as_asyncua_decodes_them(values, status, src_ticks, srv_ticks):
    def when(ticks):
        return None if ticks is None else ua.win_epoch_to_datetime(ticks)

    dvs = [ua.DataValue(ua.Variant(v, vt), StatusCode=ua.StatusCode(status), SourceTimestamp=when(src_ticks),
                        ServerTimestamp=when(srv_ticks)) for v, vt in values]
    _check(dvs)


def _item(handle: int, mask: int, tail: bytes) -> bytes:
    return struct.pack("<IB", handle, mask) + tail


def test_picoseconds_are_read_in_the_order_of_part_6():
    # Value, StatusCode, SourceTimestamp, SourcePicoseconds, ServerTimestamp, ServerPicoseconds (OPC-UA Part 6, 5.2.2.17)
    ticks = 133_000_000_000_000_000
    body = struct.pack("<i", 1) + _item(9, 0x3F, b"\x0b" + struct.pack("<d", 2.5) + struct.pack("<I", 0x40940000)
                                        + struct.pack("<qH", ticks, 123) + struct.pack("<qH", ticks + 10, 456))
    [(handle, value, vtype, code, src, srv)] = decode_datachange(body)
    assert (handle, value, vtype, code) == (9, 2.5, "Double", 0x40940000)
    assert src == ticks // 10 - 11_644_473_600 * 10**6 and srv == src + 1


@pytest.mark.parametrize("cut", [3, 6, 10, 14, 20])
def test_a_truncated_body_is_refused_not_misread(cut):
    body = struct.pack("<i", 2) + _item(1, 0x0D, b"\x0b" + struct.pack("<d", 1.0) + struct.pack("<qq", 1, 2)) * 2
    decode_datachange(body)  # whole: fine
    with pytest.raises((ValueError, struct.error, IndexError)):
        decode_datachange(body[:-cut])


def test_a_string_longer_than_the_body_is_refused():
    body = struct.pack("<i", 1) + _item(1, 0x01, b"\x0c" + struct.pack("<i", 50) + b"short")
    with pytest.raises(ValueError, match="String of 50 bytes"):
        decode_datachange(body)


class _Session:
    """The outermost edge: a session whose transport hands back canned response bytes."""

    def __init__(self, blob: bytes):
        self.blob, self.requests = blob, []
        self.publish = None

    async def _send_request(self, request, timeout=None):
        self.requests.append((request, timeout))
        return Buffer(self.blob)


def test_the_session_hook_sends_asyncuas_request_and_decodes_fast():
    blob = _response([_dv(1.5, VT.Double)])
    session = _Session(blob)
    use_fast_publish(session)
    acks = [ua.SubscriptionAcknowledgement(SubscriptionId=3, SequenceNumber=6)]
    resp = asyncio.run(session.publish(acks))
    [(request, timeout)] = session.requests
    assert isinstance(request, ua.PublishRequest) and timeout == 0
    assert request.Parameters.SubscriptionAcknowledgements == acks
    [changes] = resp.Parameters.NotificationMessage.NotificationData
    assert type(changes) is DataChanges and changes.items[0][1:3] == (1.5, "Double")


def test_a_response_our_decoder_refuses_goes_to_asyncuas(monkeypatch, caplog):
    blob = _response([_dv(1.5, VT.Double), _dv("x", VT.String)])
    session = _Session(blob)
    heard = []
    use_fast_publish(session, heard.append)

    def refuse(raw):
        raise ValueError("not today")

    monkeypatch.setattr("edge.sources.opcua.fastpublish.decode_datachange", refuse)
    with caplog.at_level(logging.WARNING, logger="edge.sources.opcua"):
        resp = asyncio.run(session.publish([]))
    [dcn] = resp.Parameters.NotificationMessage.NotificationData
    assert isinstance(dcn, ua.DataChangeNotification)  # asyncua's object: the collector converts it
    assert [r[1] for r in records_from_notification(dcn)] == [1.5, "x"]
    assert len(heard) == 1 and "not today" in str(heard[0])
    assert "generic decoder" in caplog.text


def test_nan_compare_helper_is_strict():
    assert _same(float("nan"), float("nan")) and not _same(0.0, -0.0) and not _same(1, True)
    assert math.isnan(struct.unpack("<d", struct.pack("<d", float("nan")))[0])
