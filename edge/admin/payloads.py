"""Dead letters and quarantined payloads, made safe to show: decoded, bounded, never trusted.

Pure. A quarantined payload is whatever a device sent: it is shown as text only
after escaping (Jinja autoescape does the HTML part; here we cut it to a bound
and make non-printable bytes visible), plus a hex dump of its beginning.
"""

from __future__ import annotations

import base64
import time
from typing import Any, Mapping

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import DecodeError

from edge.encode import decode

MAX_SHOW = 4096
HEX_SHOW = 256


def _b(v: Any) -> bytes | None:
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v)
    if isinstance(v, str):
        return v.encode("utf-8", "replace")
    return None


def printable(raw: bytes, limit: int = MAX_SHOW) -> dict:
    head = raw[:limit]
    text = head.decode("utf-8", "backslashreplace")
    # Control characters other than newline/tab would garble the page; show them as escapes.
    text = "".join(c if c in "\n\t" or (c.isprintable()) else f"\\x{ord(c):02x}" for c in text)
    return {"text": text, "truncated": len(raw) > limit, "size": len(raw),
            "hex": " ".join(f"{b:02x}" for b in raw[:HEX_SHOW])}


def _to_dict(msg) -> dict:
    """Fields of a Reading; int64 back to ints (MessageToDict quotes them) and timestamps also as UTC text."""
    out = {}
    for k, v in MessageToDict(msg, preserving_proto_field_name=True).items():
        if isinstance(v, str) and (k.endswith("_ts") or k.endswith("_seq") or k in ("seq", "value_int")):
            try:
                v = int(v)
            except ValueError:  # not a number after all: shown as the text it is
                pass
        out[k] = v
        if k.endswith("_ts") and isinstance(v, int):
            out[k + "_utc"] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(v / 1e6)) + f".{v % 1_000_000:06d} UTC"
    return out


def decode_body(body: bytes) -> dict:
    try:
        msg = decode(body)
        return {"ok": True, "fields": _to_dict(msg)}
    except (DecodeError, ValueError) as exc:
        return {"ok": False, "error": f"not a Reading: {exc}"[:200]}


def _first(rec: Mapping[str, Any], *keys: str) -> Any:
    for k in keys:
        if k in rec and rec[k] is not None:
            return rec[k]
    return None


def _rec(r: Any, names: tuple[str, ...]) -> Mapping[str, Any]:
    if isinstance(r, Mapping):
        return r
    if isinstance(r, (tuple, list)):
        return dict(zip(names, r))
    return {}


def dead_letter(r: Any) -> dict:
    rec = _rec(r, ("id", "seq", "body", "reason", "ts"))
    body = _b(_first(rec, "body", "record", "payload")) or b""
    return {
        "id": _first(rec, "id"),
        "seq": _first(rec, "seq"),
        "reason": str(_first(rec, "reason", "error") or "")[:1000],
        "ts": _first(rec, "ts", "dead_lettered_ts", "created_ts"),
        "collected_ts": _first(rec, "collected_ts"),
        "decoded": decode_body(body),
        "raw": printable(body, 1024),
    }


def quarantined(r: Any) -> dict:
    rec = _rec(r, ("id", "source", "reason", "raw", "raw_len", "meta", "ts"))
    raw = _b(_first(rec, "raw", "payload", "body")) or b""
    meta = _first(rec, "meta")
    if isinstance(meta, (bytes, str)):
        meta = {"meta": printable(_b(meta) or b"", 1024)["text"]}
    return {
        "id": _first(rec, "id", "seq", "rowid"),
        "source": str(_first(rec, "source") or "")[:120],
        "reason": str(_first(rec, "reason") or "")[:1000],
        "ts": _first(rec, "ts", "created_ts"),
        "meta": {str(k)[:80]: str(v)[:300] for k, v in (meta or {}).items()} if isinstance(meta, Mapping) else {},
        "raw": {**printable(raw), "size": max(len(raw), int(_first(rec, "raw_len") or 0))},
        "raw_b64": base64.b64encode(raw[:MAX_SHOW]).decode(),
    }
