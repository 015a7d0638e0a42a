"""A small asyncio HTTP/1.1 server where every resource a client can hold is bounded.

Why not the stdlib ``ThreadingHTTPServer`` any more: it had a thread per
connection, no timeouts, and with TLS the handshake ran inside ``accept()`` on
the one serving thread, so one silent TCP connection stopped every HTTPS
request. Why not h11: the request side we accept is tiny (Content-Length
bodies only, see ``wire.py``) and the limits below are about the connection,
not the parser, so a dependency would add little.

The bounds, all from the source's options:

- ``max_connections`` open at once. A new connection over the cap closes the
  connection that has been idle longest (between requests, or not yet sent a
  byte); when none is idle it gets ``503`` and is closed. Idle connections cost
  a few KB and no thread.
- TLS handshakes run per connection (``start_tls``) with ``header_timeout``,
  never on the accept path.
- ``idle_timeout`` for the first byte of the next request; ``header_timeout``
  for the whole head from its first byte (a byte a second is cut off, 408);
  ``body_timeout`` for the body (a Content-Length larger than what comes is
  408 and nothing of it is handed on); the same for writing an answer.

The app is ``async app(request, body) -> Reply``: it may answer without reading
the body (a 401 or 413 is sent at once and the connection closed).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from dataclasses import dataclass, field
from itertools import count
from typing import Awaitable, Callable

from edge.sources.http.wire import HttpError, Request, parse_head, response

HEAD_LIMIT = 64 * 1024  # StreamReader limit: a head longer than this is refused (431)


@dataclass
class Limits:
    max_connections: int = 64
    idle_timeout: float = 60.0
    header_timeout: float = 10.0
    body_timeout: float = 30.0


@dataclass
class Reply:
    status: int
    body: dict
    headers: dict[str, str] = field(default_factory=dict)
    close: bool = False


class Body:
    """The request body, read on demand within the body timeout."""

    def __init__(self, req: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float):
        self._req, self._reader, self._writer, self._timeout = req, reader, writer, timeout
        self.consumed = not req.content_length

    async def read(self) -> bytes:
        n = self._req.content_length or 0
        if self.consumed:
            return b""
        if self._req.expect_continue:
            self._writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        try:
            async with asyncio.timeout(self._timeout):
                data = await self._reader.readexactly(n)
        except TimeoutError:
            raise HttpError(408, f"body not received within {self._timeout:g} s of its Content-Length") from None
        except asyncio.IncompleteReadError:
            raise HttpError(400, "connection closed before the body matched its Content-Length") from None
        self.consumed = True
        return data


App = Callable[[Request, Body], Awaitable[Reply]]


class _Conn:
    __slots__ = ("id", "writer", "tls")

    def __init__(self, cid: int, writer: asyncio.StreamWriter, tls: bool):
        self.id, self.writer, self.tls = cid, writer, tls


class Server:
    def __init__(self, app: App, limits: Limits, tls: ssl.SSLContext | None = None,
                 log: logging.Logger | None = None, on_refused: Callable[[], None] | None = None):
        self.app, self.limits, self.tls = app, limits, tls
        self.log = log or logging.getLogger(__name__)
        self.on_refused = on_refused or (lambda: None)
        self._server: asyncio.base_events.Server | None = None
        self._open: dict[int, _Conn] = {}
        self._idle: dict[int, _Conn] = {}  # insertion order = idle since
        self._ids = count()
        self.evicted = 0

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._accept, host, port, limit=HEAD_LIMIT, backlog=128)
        return self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for c in list(self._open.values()):
            c.writer.transport.abort()
        self._open.clear()
        self._idle.clear()

    @property
    def open_connections(self) -> int:
        return len(self._open)

    # --- connections
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._open) >= self.limits.max_connections and not self._evict_idle():
            self.on_refused()
            if self.tls is None:
                writer.write(_reply_bytes(Reply(503, {"success": False, "error": "too many connections: retry later"},
                                                {"Retry-After": "1"}, close=True)))
                writer.close()
            else:
                writer.transport.abort()
            return
        conn = _Conn(next(self._ids), writer, self.tls is not None)
        self._open[conn.id] = conn
        self._idle[conn.id] = conn
        try:
            await self._serve(conn, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, TimeoutError, OSError):
            pass  # the client went away, timed out, or failed its handshake: nothing to answer
        except Exception:  # noqa: BLE001 - e.g. an eviction during start_tls: one connection, never the server
            self.log.debug("http connection ended by an unexpected error", exc_info=True)
        finally:
            self._open.pop(conn.id, None)
            self._idle.pop(conn.id, None)
            writer.transport.abort()

    def _evict_idle(self) -> bool:
        for cid, victim in self._idle.items():
            del self._idle[cid]
            self._open.pop(cid, None)
            victim.writer.transport.abort()
            self.evicted += 1
            return True
        return False

    async def _serve(self, conn: _Conn, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        lim = self.limits
        if self.tls is not None:
            await writer.start_tls(self.tls, ssl_handshake_timeout=lim.header_timeout)
        peer = _peer(writer)
        while True:
            self._idle.pop(conn.id, None)
            self._idle[conn.id] = conn
            async with asyncio.timeout(lim.idle_timeout):
                first = await reader.readexactly(1)
            self._idle.pop(conn.id, None)
            try:
                req = await self._read_head(first, reader)
            except HttpError as exc:
                await self._send(writer, Reply(exc.status, {"success": False, "error": exc.reason}, close=True))
                return
            req.peer = peer
            body = Body(req, reader, writer, lim.body_timeout)
            try:
                reply = await self.app(req, body)
            except HttpError as exc:
                reply = Reply(exc.status, {"success": False, "error": exc.reason}, close=True)
            except Exception:  # a bug must still give the client a status line, and one log entry
                self.log.exception("http request %s %s failed", req.method, req.path)
                reply = Reply(500, {"success": False, "error": "internal error: see the appliance log"}, close=True)
            close = reply.close or not req.keep_alive or not body.consumed
            reply.close = close
            await self._send(writer, reply)
            if close:
                return

    async def _read_head(self, first: bytes, reader: asyncio.StreamReader) -> Request:
        try:
            async with asyncio.timeout(self.limits.header_timeout):
                rest = await reader.readuntil(b"\r\n\r\n")
        except TimeoutError:
            raise HttpError(408, f"request head not received within {self.limits.header_timeout:g} s") from None
        except asyncio.LimitOverrunError:
            raise HttpError(431, f"request head over {HEAD_LIMIT} bytes") from None
        return parse_head(first + rest)

    async def _send(self, writer: asyncio.StreamWriter, reply: Reply) -> None:
        writer.write(_reply_bytes(reply))
        async with asyncio.timeout(self.limits.body_timeout):
            await writer.drain()


def _reply_bytes(reply: Reply) -> bytes:
    headers = {"Content-Type": "application/json", "Cache-Control": "no-store", **reply.headers}
    return response(reply.status, json.dumps(reply.body, separators=(",", ":")).encode(), headers, close=reply.close)


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else "?"
