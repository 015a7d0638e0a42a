"""HTTP batch source speaking the Ignition-to-ZeroBus gateway scripts' wire format.

An Ignition gateway's Event Stream handler or Tag Change Script POSTs JSON
batches of tag events; this source is the endpoint they post to, with the
appliance's durable spool behind it. Routes (``base_path`` prefixes them):

    POST /system/zerobus/ingest/batch   a JSON array of events
    POST /system/zerobus/ingest         one event
    GET  /system/zerobus/health         {"status": "ok", "moduleLoaded": true, "version": ...}
    GET  /system/zerobus/diagnostics    counters in the gateway module's field names

The promise is stronger than the module's memory queue: 200 is answered only
after every valid event of the request is committed to the spool. Invalid
events are quarantined with their reason and counted in the response, still
with 200 (resending them would not make them valid). When the spool refuses
data (``when_full: block`` and full) the answer is 503 with Retry-After, so the
gateway keeps the batch and retries.

The server is stdlib ``ThreadingHTTPServer`` (HTTP/1.1 keep-alive, one thread
per connection): a plant has a handful of gateways, and each handler blocks on
the commit anyway.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from edge import __version__
from edge.sources.http.config import Config
from edge.sources.base import SourceContext, now_us
from edge.sources.http.ignition import map_events

ROUTE = "/system/zerobus"
QUARANTINE_RAW_MAX = 64 * 1024


class _Counters:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received = 0
        self.accepted = 0
        self.quarantined = 0
        self.refused = 0  # answered non-200 (auth, full, too large)
        self.last_event_time: float | None = None

    def add(self, **kw: int) -> None:
        with self.lock:
            for k, v in kw.items():
                setattr(self, k, getattr(self, k) + v)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "zerobus-edge"
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle + delayed ACK stall each answer ~40 ms.
    disable_nagle_algorithm = True
    sys_version = ""
    source: "Source"  # set on the subclass built per server

    def log_message(self, fmt: str, *args: Any) -> None:  # access log off: request lines may carry tokens in bad clients
        pass

    # --- plumbing
    def _send(self, status: int, body: dict, headers: dict | None = None) -> None:
        raw = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)

    def _authorized(self) -> bool:
        token = self.source.cfg.token
        given = self.headers.get("X-Edge-Token")
        auth = self.headers.get("Authorization", "")
        if given is None and auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        return given is not None and hmac.compare_digest(given.encode(), token.encode())

    def _route(self) -> str | None:
        base = self.source.cfg.base_path + ROUTE
        path = self.path.split("?", 1)[0]
        return path[len(base):] if path.startswith(base) else None

    # --- verbs
    def do_GET(self) -> None:
        route = self._route()
        if route == "/health":
            self._send(200, {"status": "ok", "moduleLoaded": True, "version": __version__})
        elif route == "/diagnostics":
            if not self._authorized():
                self._send(401, {"success": False, "error": "missing or wrong token"})
                return
            self._send(200, self.source.diagnostics())
        else:
            self._send(404, {"success": False, "error": "not found"})

    def do_POST(self) -> None:
        route = self._route()
        if route not in ("/ingest/batch", "/ingest"):
            self._drain_and_send(404, {"success": False, "error": "not found"})
            return
        src = self.source
        if not self._authorized():
            src.counters.add(refused=1)
            self._drain_and_send(401, {"success": False, "error": "missing or wrong token"})
            return
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self._send(411, {"success": False, "error": "send Content-Length (chunked bodies are not accepted)"},
                       {"Connection": "close"})
            self.close_connection = True
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._send(411, {"success": False, "error": "Content-Length required"}, {"Connection": "close"})
            self.close_connection = True
            return
        if length > src.cfg.max_body_bytes:
            src.counters.add(refused=1)
            # Do not read a body we refuse; close so the unread bytes are not taken for a request.
            self._send(413, {"success": False, "error": f"body over {int(src.cfg.max_body_bytes)} bytes: send smaller batches"},
                       {"Connection": "close"})
            self.close_connection = True
            return
        raw = self.rfile.read(length)
        status, body, headers = src.handle(raw, single=(route == "/ingest"))
        self._send(status, body, headers)

    def _drain_and_send(self, status: int, body: dict) -> None:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if 0 <= length <= self.source.cfg.max_body_bytes:
            self.rfile.read(length)  # keep the connection usable
            self._send(status, body)
        else:
            self._send(status, body, {"Connection": "close"})
            self.close_connection = True


class Source:
    def __init__(self, cfg: Config, ctx: SourceContext):
        self.cfg = cfg
        self.ctx = ctx
        self.counters = _Counters()
        self.server: ThreadingHTTPServer | None = None

    # --- request handling (runs in the connection's thread)
    def handle(self, raw: bytes, *, single: bool) -> tuple[int, dict, dict]:
        from edge.writer import SpoolFull

        ctx, cfg = self.ctx, self.cfg
        collected = now_us()
        try:
            doc = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return self._quarantine_body(raw, f"body is not valid JSON: {exc}")
        events = [doc] if single else doc
        if not isinstance(events, list):
            return self._quarantine_body(raw, "batch body must be a JSON array of events")
        if len(events) > cfg.max_batch_events:
            self.counters.add(refused=1)
            return 413, {"success": False, "error": f"more than {cfg.max_batch_events} events: send smaller batches"}, {}
        items, rejected = map_events(events, source=cfg.name, collected_ts=collected)
        self.counters.add(received=len(events))
        try:
            if rejected:
                # Quarantine first: if that commit fails the whole request fails and is resent.
                futs = [
                    ctx.quarantine(cfg.name, r.reason, _bounded(json.dumps(r.event, default=str).encode()),
                                   {"index": r.index, "route": "single" if single else "batch"})
                    for r in rejected
                ]
                for f in futs:
                    f.result(timeout=cfg.commit_timeout)
            result = ctx.submit(items).result(timeout=cfg.commit_timeout) if items else None
        except SpoolFull as exc:
            self.counters.add(refused=1)
            ctx.status.set_state("blocked", f"spool full: {exc}")
            return 503, {"success": False, "error": "spool full: retry later"}, {"Retry-After": str(cfg.retry_after)}
        except TimeoutError:
            self.counters.add(refused=1)
            return 503, {"success": False, "error": "spool commit slow: retry later"}, {"Retry-After": str(cfg.retry_after)}
        self.counters.add(accepted=len(items), quarantined=len(rejected))
        self.counters.last_event_time = time.time()
        if rejected:
            ctx.status.quarantined(len(rejected))
        if items:
            ctx.status.readings(len(items))
        ctx.status.set_state("listening", self._where())
        body: dict[str, Any] = {"success": True, "accepted": len(items), "quarantined": len(rejected)}
        if result is not None:
            body["firstSeq"], body["lastSeq"] = result.first_seq, result.last_seq
        if rejected:
            body["errors"] = [{"index": r.index, "reason": r.reason} for r in rejected[:20]]
        return 200, body, {}

    def _quarantine_body(self, raw: bytes, reason: str) -> tuple[int, dict, dict]:
        from edge.writer import SpoolFull

        try:
            self.ctx.quarantine(self.cfg.name, reason, _bounded(raw), {"length": len(raw)}).result(
                timeout=self.cfg.commit_timeout)
        except (SpoolFull, TimeoutError):
            return 503, {"success": False, "error": "spool unavailable: retry later"}, {"Retry-After": str(self.cfg.retry_after)}
        self.counters.add(quarantined=1)
        self.ctx.status.quarantined(1)
        return 200, {"success": True, "accepted": 0, "quarantined": 1, "errors": [{"index": None, "reason": reason}]}, {}

    def diagnostics(self) -> dict:
        stats = self.ctx.stats() if self.ctx.stats else {}
        spool = stats.get("spool", {})
        fwd = stats.get("forwarder", {})
        c = self.counters
        return {
            "moduleVersion": __version__,
            "enabled": True,
            "zerobusConnected": fwd.get("state") in ("streaming", "idle"),
            "totalEventsReceived": c.received,
            "totalEventsSent": spool.get("delivered_total"),
            "totalEventsFailed": c.quarantined,
            "queueSize": spool.get("depth_rows"),
            "lastEventTime": int(c.last_event_time * 1000) if c.last_event_time else None,
            "accepted": c.accepted,
            "refused": c.refused,
            "forwarderState": fwd.get("state"),
        }

    def _where(self) -> str:
        scheme = "https" if self.cfg.tls_cert else "http"
        return f"{scheme}://{self.cfg.listen}{self.cfg.base_path}{ROUTE}"

    # --- lifecycle
    def _make_server(self) -> ThreadingHTTPServer:
        host, _, port = self.cfg.listen.rpartition(":")
        handler = type("Handler", (_Handler,), {"source": self})
        server = ThreadingHTTPServer((host.strip("[]"), int(port)), handler)
        server.daemon_threads = True
        if self.cfg.tls_cert:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.minimum_version = ssl.TLSVersion.TLSv1_2
            tls.load_cert_chain(self.cfg.tls_cert, self.cfg.tls_key)
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        return server

    async def run(self) -> None:
        try:
            self.server = self._make_server()
        except OSError as exc:
            self.ctx.status.set_state("error", f"cannot listen on {self.cfg.listen}: {exc.strerror}")
            raise
        except ssl.SSLError as exc:
            self.ctx.status.set_state("error", f"TLS certificate/key unusable: {exc.reason}")
            raise
        thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                  name=f"http:{self.cfg.name}", daemon=True)
        thread.start()
        self.ctx.status.set_state("listening", self._where())
        self.ctx.log.info("http source %s listening on %s", self.cfg.name, self._where())
        try:
            while True:
                await asyncio.sleep(3600)
        finally:
            await asyncio.to_thread(self.server.shutdown)
            self.server.server_close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.server_address[1]


def _bounded(raw: bytes) -> bytes:
    return raw[:QUARANTINE_RAW_MAX]
