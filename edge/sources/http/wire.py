"""HTTP/1.1 request heads and responses as bytes (pure: no sockets, no clock).

Strict on purpose: this endpoint talks to gateway scripts and reverse proxies,
not browsers, so anything ambiguous is refused with a status and a reason
instead of guessed at:

- a request line ``METHOD /target HTTP/1.x``; HTTP/1.0 and 1.1 only (505 otherwise);
- header lines ``name: value`` with a token name, no folded continuation lines,
  no control characters; at most ``MAX_HEADERS`` of them (431);
- ``Content-Length``: digits only, at most 18 of them, once. Negative,
  non-numeric, duplicate or list values are 400 (a ``-1`` used to slip past the
  body limit); ``Transfer-Encoding`` of any kind is 411, since every body here has
  a known length and accepting both would invite request smuggling behind a proxy;
- ``Host``, ``Authorization`` and ``X-Edge-Token`` at most once (400).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from http import HTTPStatus

MAX_HEADERS = 100
SINGLE = frozenset({"content-length", "host", "authorization", "x-edge-token"})
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_METHOD = re.compile(r"[A-Z]{1,16}\Z")
_TARGET = re.compile(r"/[\x21-\x7e]*\Z")
_DIGITS = re.compile(r"[0-9]{1,18}\Z")
_CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class HttpError(Exception):
    """A request we answer with ``status`` and close: the reason goes in the body."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names; repeats joined with ", "
    content_length: int | None = None
    keep_alive: bool = True
    expect_continue: bool = False
    peer: str = ""

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


def parse_head(head: bytes) -> Request:
    """The bytes up to and including the blank line -> Request, or HttpError."""
    text = head.decode("latin-1")
    lines = text.split("\r\n")
    if lines[-2:] == ["", ""]:
        lines = lines[:-2]
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise HttpError(400, "malformed request line")
    method, target, version = parts
    if not _METHOD.match(method) or not _TARGET.match(target):
        raise HttpError(400, "malformed request line")
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise HttpError(505, "only HTTP/1.0 and HTTP/1.1 are served")
    if len(lines) - 1 > MAX_HEADERS:
        raise HttpError(431, f"more than {MAX_HEADERS} header lines")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.match(name):
            raise HttpError(400, "malformed header line")
        value = value.strip(" \t")
        if _CTL.search(value):
            raise HttpError(400, "control character in a header value")
        key = name.lower()
        if key in headers:
            if key in SINGLE:
                raise HttpError(400, f"duplicate {name} header")
            headers[key] += ", " + value
        else:
            headers[key] = value
    req = Request(method, target, version, headers)
    if "transfer-encoding" in headers:
        raise HttpError(411, "send Content-Length (chunked or encoded bodies are not accepted)")
    if "content-length" in headers:
        cl = headers["content-length"]
        if not _DIGITS.match(cl):
            raise HttpError(400, "Content-Length must be one non-negative integer")
        req.content_length = int(cl)
    conn = headers.get("connection", "").lower()
    req.keep_alive = "close" not in conn if version == "HTTP/1.1" else "keep-alive" in conn
    req.expect_continue = headers.get("expect", "").lower() == "100-continue"
    return req


def response(status: int, body: bytes, headers: dict[str, str] | None = None, *, close: bool = False) -> bytes:
    """One response as bytes, sent in one write (no Nagle stall between head and body)."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Status"
    out = [f"HTTP/1.1 {status} {phrase}", "Server: zerobus-edge", f"Content-Length: {len(body)}"]
    out.extend(f"{k}: {v}" for k, v in (headers or {}).items())
    if close:
        out.append("Connection: close")
    return ("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + body
