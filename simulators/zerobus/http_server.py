"""A deliberately tiny HTTP/1.1 server on asyncio (one request per connection).

It runs in the emulator's event loop so /stats, /faults and the token endpoint
see the same state as the gRPC streams without locks or threads, and it takes
the same TLS context as gRPC. No keep-alive, no chunked bodies: the only
clients are the SDK's token fetch, curl and the test harness.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

MAX_BODY = 1 << 20
READ_TIMEOUT_S = 10.0


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_response(obj: Any, status: int = 200) -> Response:
    return Response(status, (json.dumps(obj, separators=(",", ":")) + "\n").encode())


Handler = Callable[[Request], Awaitable[Response]]


class HttpServer:
    def __init__(self, handler: Handler, log: Callable[..., None]):
        self.handler = handler
        self.log = log
        self.server: asyncio.base_events.Server | None = None

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None) -> int:
        self.server = await asyncio.start_server(self._serve, host, port, ssl=ssl_context, limit=MAX_BODY)
        return self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            req = await asyncio.wait_for(self._read(reader, writer), READ_TIMEOUT_S)
            if req is None:
                return
            try:
                resp = await self.handler(req)
            except Exception as exc:  # keep serving; the client gets the reason
                self.log("http_error", path=req.path, error=repr(exc))
                resp = json_response({"error": "internal", "detail": str(exc)}, 500)
            reason = HTTPStatus(resp.status).phrase if resp.status in HTTPStatus._value2member_map_ else "Status"
            head = [f"HTTP/1.1 {resp.status} {reason}", f"Content-Type: {resp.content_type}",
                    f"Content-Length: {len(resp.body)}", "Connection: close"]
            head += [f"{k}: {v}" for k, v in resp.headers.items()]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + resp.body)
            await asyncio.wait_for(writer.drain(), READ_TIMEOUT_S)
        except (asyncio.TimeoutError, ConnectionError, ssl.SSLError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 2.0)
            except (asyncio.TimeoutError, ConnectionError, ssl.SSLError):
                pass

    @staticmethod
    async def _read(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Request | None:
        line = await reader.readline()
        if not line:
            return None
        method, target, _ = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while True:
            h = await reader.readline()
            if h in (b"\r\n", b"\n", b""):
                break
            k, _, v = h.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0"))
        if n > MAX_BODY:
            raise ValueError("body too large")
        if n and headers.get("expect", "").lower() == "100-continue":  # curl does this for bigger bodies
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = await reader.readexactly(n) if n else b""
        parts = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        return Request(method.upper(), parts.path, query, headers, body)
