"""What a ZeroBus failure means for the forwarder; pure, table-tested.

The SDK raises ``ZerobusException`` (retriable) or ``NonRetriableException``.
Their text carries the gRPC status as tonic describes it
(``code: 'Client specified an invalid argument', message: "..."``), an SDK
prefix (``Invalid argument: ...``) or the token endpoint's HTTP status
(``Client error (401): ...``). We classify on that text, code first, because
the exception types alone cannot tell "the table is gone" from "this record is
bad", and the server's free-text message may contain any words.

The guiding rule: the spool must never move past a reading because we could not
understand an error. Anything not recognised is ``Retry``: keep the data, back
off, try again. Only an explicit service verdict about a record (``RejectRecord``)
lets a single reading leave the main path, and then only into the dead-letter
table after bisection proved it is that record.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Union

Phase = Literal["create", "ingest", "ack", "internal"]


@dataclass(frozen=True)
class Retry:
    reason: str
    # The server ended the stream on purpose (close signal, status OK): a routine rotation,
    # not an outage; reconnect at once.
    graceful: bool = False
    # The service refused the stream over its quota (RESOURCE_EXHAUSTED): not an outage;
    # reopen that stream after a short pause, and more streams may share the load.
    throttled: bool = False


@dataclass(frozen=True)
class Blocked:
    """Configuration or permission problem: resending will not fix it; wait visibly for a human."""

    reason: str


@dataclass(frozen=True)
class RejectRecord:
    """The service refused the content of a batch: bisect to find the record."""

    reason: str


Outcome = Union[Retry, Blocked, RejectRecord]

# tonic's Code descriptions, as the SDK prints them inside "code: '...'".
_DESCRIPTIONS = {
    "client specified an invalid argument": "INVALID_ARGUMENT",
    "the request does not have valid authentication credentials": "UNAUTHENTICATED",
    "the caller does not have permission to execute the specified operation": "PERMISSION_DENIED",
    "some requested entity was not found": "NOT_FOUND",
    "operation is not implemented or not supported": "UNIMPLEMENTED",
    "the system is not in a state required for the operation's execution": "FAILED_PRECONDITION",
    "operation was attempted past the valid range": "OUT_OF_RANGE",
    "the service is currently unavailable": "UNAVAILABLE",
    "internal error": "INTERNAL",
    "deadline expired before operation could complete": "DEADLINE_EXCEEDED",
    "some resource has been exhausted": "RESOURCE_EXHAUSTED",
    "the operation was cancelled": "CANCELLED",
    "the operation was aborted": "ABORTED",
    "unknown error": "UNKNOWN",
    "unrecoverable data loss or corruption": "DATA_LOSS",
    "the operation completed successfully": "OK",
    "some entity that we attempted to create already exists": "ALREADY_EXISTS",
}
_NAMES = {
    name.replace("_", ""): name
    for name in set(_DESCRIPTIONS.values())
}
# The SDK's own prefixes for errors it turns into NonRetriableException.
_PREFIXES = {
    "invalid argument:": "INVALID_ARGUMENT",
    "unauthenticated:": "UNAUTHENTICATED",
    "permission denied:": "PERMISSION_DENIED",
    "not found:": "NOT_FOUND",
}
_CODE_FIELD = re.compile(r"code:\s*'([^']*)'", re.I)
_STATUS_WORD = re.compile(r"\b(?:status|code)[:=]?\s*([A-Za-z_]+)")
_HTTP = re.compile(r"(client|server) error \((\d{3})\)", re.I)

# Client-side protocol anomalies (acks backwards / past what was sent): a server bug or a
# restart mid-stream, not a bad record; a fresh stream fixes them.
_ACK_ANOMALIES = ("acknowledgement claims", "unexpected ack", "ack for offset", "ack channel")
_SCHEMA_WORDS = ("schema", "descriptor")


def grpc_code(text: str) -> str | None:
    """The gRPC status named in an SDK error text, as UPPER_SNAKE, or None."""
    low = text.lower()
    m = _CODE_FIELD.search(text)
    if m:
        code = _DESCRIPTIONS.get(m.group(1).strip().lower())
        if code:
            return code
    for prefix, code in _PREFIXES.items():
        if low.startswith(prefix) or f": {prefix}" in low:
            return code
    for desc, code in _DESCRIPTIONS.items():
        if desc in low:
            return code
    for m in _STATUS_WORD.finditer(text):
        word = m.group(1).replace("_", "").upper()
        if word in _NAMES:
            return _NAMES[word]
    return None


def classify(message: str, *, nonretriable: bool = False, phase: Phase = "ack") -> Outcome:
    """Classify one SDK failure.

    ``message`` is ``str(exc)`` (already scrubbed of secrets by the caller),
    ``nonretriable`` whether it was a ``NonRetriableException``, ``phase`` where it
    happened: stream creation, an ingest call, or waiting for acks/flush.
    """
    text = " ".join(message.split())
    low = text.lower()
    short = text[:300] or "no error text"

    http = _HTTP.search(text)
    if http and ("token" in low or "unity catalog" in low or "oidc" in low):
        status = int(http.group(2))
        if 400 <= status < 500 and status not in (408, 429):
            return Blocked(f"token endpoint refused the credentials (HTTP {status}): {short}")
        return Retry(f"token endpoint unavailable (HTTP {status}): {short}")
    if "token fetch failed" in low:
        return Retry(f"token endpoint unreachable: {short}")

    if any(word in low for word in _ACK_ANOMALIES):
        return Retry(f"stream protocol anomaly: {short}")

    code = grpc_code(text)
    if code == "UNAUTHENTICATED":
        return Blocked(f"authentication failed: {short}")
    if code == "PERMISSION_DENIED":
        return Blocked(f"permission denied: {short}")
    if code == "NOT_FOUND":
        return Blocked(f"table or endpoint not found: {short}")
    if code == "UNIMPLEMENTED":
        return Blocked(f"the endpoint does not speak ZeroBus: {short}")
    if code in ("INVALID_ARGUMENT", "FAILED_PRECONDITION"):
        if phase == "create" or any(word in low for word in _SCHEMA_WORDS):
            return Blocked(f"schema or table mismatch: {short}")
        return RejectRecord(f"rejected by the service: {short}")
    if code is None and nonretriable and "exceed" in low and ("size" in low or "bytes" in low or "limit" in low):
        # The SDK refuses an oversized call before sending; bisecting shrinks it.
        return RejectRecord(f"batch too large: {short}")
    if code == "RESOURCE_EXHAUSTED":
        return Retry(f"throttled by the service: {short}", throttled=True)
    if code == "OK" or "closed gracefully" in low:
        return Retry(f"the server closed the stream: {short}", graceful=True)
    if "stream is closed" in low or "stream closed" in low:
        return Retry(f"stream closed: {short}")
    return Retry(short)
