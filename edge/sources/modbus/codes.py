"""The ``status_code`` of a BAD Modbus reading, and the text that explains it: pure, no I/O.

Codes 1..255 are the device's own Modbus exception code, unchanged (it answered "no");
codes 1001.. are what the collector saw on the wire when no exception came back.
The table is documented in ``edge/sources/modbus/README.md`` (a test keeps the two in step).
"""

from __future__ import annotations

STATUS_TIMEOUT = 1001  # no response within `timeout`
STATUS_NO_CONNECTION = 1002  # cannot connect: refused, unreachable, name does not resolve
STATUS_BAD_RESPONSE = 1003  # an answer that does not parse, is short, or has the wrong unit/transaction id
STATUS_CONNECTION_CLOSED = 1004  # the device closed (FIN) or reset (RST) the connection while a request was open
STATUS_TRANSPORT_ERROR = 1005  # any other socket/library error while sending or receiving

EXCEPTION_TEXT = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "device failure",
    5: "acknowledge (busy with a long operation)",
    6: "device busy",
    7: "negative acknowledge",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}

TEXT = {
    STATUS_TIMEOUT: "no response within the timeout",
    STATUS_NO_CONNECTION: "no TCP connection",
    STATUS_BAD_RESPONSE: "malformed or mismatched response",
    STATUS_CONNECTION_CLOSED: "connection closed by the device",
    STATUS_TRANSPORT_ERROR: "transport error",
}

# Failures that concern the request, not the device: bisecting the block can find the register(s) behind them.
# 1 (illegal function) is about the whole table, 5/6 are transient, 10/11 mean the device behind a gateway is gone.
REQUEST_CODES = frozenset({2, 3, 4, 8, STATUS_CONNECTION_CLOSED})
# Exception codes after which the device (not just the request) is unreachable.
GATEWAY_CODES = frozenset({10, 11})


def status_text(code: int) -> str:
    """``'exception 2: illegal data address'``, ``'1004: connection closed by the device'``."""
    if code in TEXT:
        return f"{code}: {TEXT[code]}"
    return f"exception {code}: {EXCEPTION_TEXT.get(code, 'unknown exception code')}"


__all__ = [
    "EXCEPTION_TEXT", "GATEWAY_CODES", "REQUEST_CODES", "STATUS_BAD_RESPONSE", "STATUS_CONNECTION_CLOSED",
    "STATUS_NO_CONNECTION", "STATUS_TIMEOUT", "STATUS_TRANSPORT_ERROR", "TEXT", "status_text",
]
