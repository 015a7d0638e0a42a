"""The OPC-UA fast Publish decoder: decode, or refuse with an error asyncua's fallback takes; never crash or hang.

Refusing means raising one of ``REFUSALS`` (the session hook then hands the response to asyncua's decoder);
anything else (RecursionError, MemoryError, a hang) would be a crash.
"""

from __future__ import annotations

import struct
from datetime import datetime, timezone

from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua import ua_binary
from hypothesis import example, given
from hypothesis import strategies as st

from edge.sources.opcua.fastpublish import decode_datachange, decode_publish_response

from .profile import fuzz

REFUSALS = (ValueError, struct.error, IndexError, ua.UaError, UnicodeDecodeError, NotImplementedError, EOFError)
T0 = datetime(2026, 11, 24, 3, 0, 0, tzinfo=timezone.utc)
VT = ua.VariantType


def _response(values) -> bytes:
    dvs = [ua.DataValue(ua.Variant(v, vt), StatusCode=ua.StatusCode(0), SourceTimestamp=T0) for v, vt in values]
    dcn = ua.DataChangeNotification(
        MonitoredItems=[ua.MonitoredItemNotification(ClientHandle=i + 1, Value=dv) for i, dv in enumerate(dvs)])
    resp = ua.PublishResponse()
    resp.Parameters.SubscriptionId = 3
    resp.Parameters.NotificationMessage = ua.NotificationMessage(SequenceNumber=7, PublishTime=T0, NotificationData=[dcn])
    return ua_binary.struct_to_binary(resp)


_SEED = _response([(1.5, VT.Double), (7, VT.Int32), ("text", VT.String), ([1, 2, 3], VT.Int32), (True, VT.Boolean),
                   (T0, VT.DateTime), (None, VT.Null), (b"\x00\x01", VT.ByteString)])


@st.composite
def _mutations(draw, seed: bytes = _SEED) -> bytes:
    raw = bytearray(seed)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.integers(0, 2))
        pos = draw(st.integers(0, len(raw)))
        if op == 0 and pos < len(raw):
            raw[pos] = draw(st.integers(0, 255))
        elif op == 1:
            raw[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        else:
            del raw[pos:pos + draw(st.integers(1, 16))]
    return bytes(raw)


def _refuse_or_decode(call):
    try:
        return call()
    except REFUSALS:
        return None


@fuzz
@given(st.one_of(st.binary(max_size=200), _mutations()))
@example(struct.pack("<i", 2**31 - 1))  # a count far past the body
@example(struct.pack("<i", 1) + struct.pack("<IB", 1, 1) + bytes([0x80 | 6]) + struct.pack("<i", 2**31 - 1))  # huge array
def test_datachange_bodies(raw):
    out = _refuse_or_decode(lambda: decode_datachange(raw))
    assert out is None or all(len(rec) == 6 for rec in out)


@fuzz
@given(_mutations())
def test_whole_publish_responses(raw):
    _refuse_or_decode(lambda: decode_publish_response(Buffer(raw)))
