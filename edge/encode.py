"""Reading encoding: pure functions, no I/O.

A reading is encoded once, by the collector, into a *body*: the protobuf
encoding of every field except ``appliance_id`` and ``seq``. The spool stores
the body and assigns ``seq`` at commit; the forwarder frames a record as
``prefix(appliance_id) + seq field + body``. Protobuf fields may appear in any
order on the wire, so the framed bytes parse exactly like a message built with
all fields at once, and draining costs one bytes concatenation per reading.
"""

from __future__ import annotations

import json
import math
from typing import Any

from edge.pb.reading_pb2 import Reading

GOOD, UNCERTAIN, BAD = "GOOD", "UNCERTAIN", "BAD"
QUALITIES = (GOOD, UNCERTAIN, BAD)

_APPLIANCE_TAG = b"\x0a"  # field 1, wire type 2 (length-delimited)
_SEQ_TAG = b"\x10"  # field 2, wire type 0 (varint)


def varint(n: int) -> bytes:
    """Protobuf base-128 varint of a non-negative int (int64 two's complement for negatives)."""
    if n < 0:
        n += 1 << 64
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def appliance_prefix(appliance_id: str) -> bytes:
    raw = appliance_id.encode("utf-8")
    return _APPLIANCE_TAG + varint(len(raw)) + raw + _SEQ_TAG


def frame(prefix: bytes, seq: int, body: bytes) -> bytes:
    """The full record for ZeroBus: prefix from appliance_prefix(), then seq, then the body."""
    return prefix + varint(seq) + body


def encode_reading(
    *,
    source: str,
    protocol: str,
    point: str,
    value: Any,
    quality: str = GOOD,
    status_code: int | None = None,
    source_ts: int | None = None,
    server_ts: int | None = None,
    collected_ts: int | None = None,
    unit: str | None = None,
    data_type: str | None = None,
) -> bytes:
    """Body bytes of one reading. Timestamps are int microseconds since the epoch (UTC).

    The value goes to the typed column matching its Python type; structured or
    non-finite values go to ``value_json`` so nothing is coerced silently.
    """
    msg = Reading(kind="reading", source=source, protocol=protocol, point=point, quality=quality)
    _set_value(msg, value)
    if status_code is not None:
        msg.status_code = status_code
    if source_ts is not None:
        msg.source_ts = source_ts
    if server_ts is not None:
        msg.server_ts = server_ts
    if collected_ts is not None:
        msg.collected_ts = collected_ts
    if unit is not None:
        msg.unit = unit
    if data_type is not None:
        msg.data_type = data_type
    # Partial: the required appliance_id and seq are framed in later.
    return msg.SerializePartialToString()


def _set_value(msg: Reading, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool):
        msg.value_bool = value
    elif isinstance(value, int):
        if -(1 << 63) <= value < (1 << 63):
            msg.value_int = value
        else:
            msg.value_json = json.dumps(value)
    elif isinstance(value, float):
        if math.isfinite(value):
            msg.value_double = value
        else:
            # JSON has no NaN/Infinity; keep the fact as a string inside JSON.
            msg.value_json = json.dumps(str(value))
    elif isinstance(value, str):
        msg.value_string = value
    else:
        msg.value_json = json.dumps(value, default=_json_default, separators=(",", ":"))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (bytes, bytearray)):
        return obj.hex()
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    return str(obj)


def encode_loss_marker(from_seq: int, to_seq: int, reason: str, collected_ts: int | None = None) -> bytes:
    """Body of a loss marker accounting for seqs from_seq..to_seq (inclusive).

    The marker is stored at seq ``from_seq``: the slot of the first reading it
    replaces, so marking a loss never consumes a seq of its own.
    """
    msg = Reading(
        kind="loss",
        protocol="edge",
        loss_from_seq=from_seq,
        loss_to_seq=to_seq,
        loss_reason=reason,
    )
    if collected_ts is not None:
        msg.collected_ts = collected_ts
    return msg.SerializePartialToString()


def encode_gap_marker(*, source: str, protocol: str, point: str, start_us: int, end_us: int, reason: str,
                      collected_ts: int | None = None) -> bytes:
    """Body of a gap marker: the source lost ``point``'s values between two source times.

    A row of kind ``gap`` (an ordinary row with its own seq, unlike a loss marker, which
    accounts for seqs): ``source_ts`` is where the gap starts (the last value held before it),
    ``value_json`` holds both ends and the length (``{"from_us", "to_us", "seconds"}``),
    ``loss_reason`` says why it could not be filled (``history_empty``, ...).
    """
    msg = Reading(kind="gap", source=source, protocol=protocol, point=point, source_ts=start_us, loss_reason=reason)
    msg.value_json = json.dumps({"from_us": start_us, "to_us": end_us, "seconds": round(max(0, end_us - start_us) / 1e6, 6)},
                                separators=(",", ":"))
    if collected_ts is not None:
        msg.collected_ts = collected_ts
    return msg.SerializePartialToString()


def decode(record: bytes) -> Reading:
    """Parse a framed record (or a body) back into a message; for tools and tests, not the hot path."""
    msg = Reading()
    msg.ParseFromString(record)
    return msg
