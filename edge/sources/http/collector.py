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

The server (``server.py``) bounds connections, timeouts and TLS handshakes;
this module is the endpoint: routes, the token (failures logged without the
token and throttled per address, ``throttle.py``), and the commit. A body is
parsed by ``body.py``: what cannot be parsed is quarantined with its reason
(200: resending would not help), and the valid events of a batch are committed
before the 200 even when another element is unusable.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hmac
import json
import os
import ssl
import threading
import time
from typing import Any

from edge import __version__
from edge.sources.base import SourceContext, State, now_us
from edge.spool import QUARANTINE_RAW_MAX as ROW_MAX  # what the spool keeps of one quarantine row
from edge.sources.states import refused_state
from edge.sources.http.body import TOO_DEEP, BodyError, Unparsed, load
from edge.sources.http.config import Config
from edge.sources.http.ignition import Rejected, map_events
from edge.sources.http.server import Body, Limits, Reply, Server
from edge.sources.http.throttle import OVERFLOW, AuthThrottle
from edge.sources.http.wire import HttpError, Request

ROUTE = "/system/zerobus"
# A request body is parsed, mapped and committed on one of a few worker threads (bounded, not one per
# connection) while the serving loop goes on reading and answering: with the loop doing it all, its
# socket calls queued behind the GIL and the benchmark lost a quarter of its rate.
WORKERS = 8
# Failed token attempts: an address's first gets a line, the rest one line with their count per this many seconds.
LOG_EVERY = 60.0


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


class Source:
    def __init__(self, cfg: Config, ctx: SourceContext):
        self.cfg = cfg
        self.ctx = ctx
        self.counters = _Counters()
        self.throttle = AuthThrottle(max_failures=cfg.auth_max_failures, window=cfg.auth_lockout,
                                     lockout=cfg.auth_lockout)
        self.clock = time.monotonic  # of the throttle and its log lines
        self.server: Server | None = None
        self.bound_port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._workers: concurrent.futures.ThreadPoolExecutor | None = None  # made by run()

    # --- requests (on the serving thread's event loop)
    async def app(self, req: Request, body: Body) -> Reply:
        route = self._route(req.path)
        if req.method == "GET" and route == "/health":
            return Reply(200, {"status": "ok", "moduleLoaded": True, "version": __version__})
        if route not in ("/diagnostics", "/ingest/batch", "/ingest"):
            return Reply(404, {"success": False, "error": "not found"})
        want = "GET" if route == "/diagnostics" else "POST"
        if req.method != want:
            return Reply(405, {"success": False, "error": f"use {want}"}, {"Allow": want})
        refusal = self._check_token(req)
        if refusal is not None:
            self.counters.add(refused=1)
            return refusal
        if route == "/diagnostics":
            return Reply(200, await asyncio.to_thread(self.diagnostics))
        if req.content_length is None:
            return Reply(411, {"success": False, "error": "Content-Length required"}, close=True)
        if req.content_length > self.cfg.max_body_bytes:
            self.counters.add(refused=1)
            # The body is not read: the connection closes after the answer.
            return Reply(413, {"success": False,
                               "error": f"body over {int(self.cfg.max_body_bytes)} bytes: send smaller batches"})
        try:
            raw = await body.read()
        except HttpError:
            self.counters.add(refused=1)
            raise
        return await self.ingest(raw, single=(route == "/ingest"))

    def _check_token(self, req: Request) -> Reply | None:
        """None when the token is right; otherwise the answer (401, or 429 while the address is blocked)."""
        now = self.clock()
        wait = self.throttle.blocked_for(req.peer, now)
        if wait > 0:
            return Reply(429, {"success": False, "error": "too many failed token attempts: retry later"},
                         {"Retry-After": str(max(1, round(wait)))}, close=True)
        given, via = req.headers.get("x-edge-token"), "X-Edge-Token"
        auth = req.headers.get("authorization", "")
        if given is None and auth[:7].lower() == "bearer ":
            given, via = auth[7:].strip(), "Authorization: Bearer"
        if given is not None and hmac.compare_digest(given.encode(), self.cfg.token.encode()):
            self.throttle.succeeded(req.peer)
            return None
        failures, blocked = self.throttle.failed(req.peer, now)
        due = self.throttle.log_due(req.peer, now, LOG_EVERY)
        if due is not None and due[1] == 0:
            what = "no token" if given is None else f"wrong token in {via}"
            self.ctx.log.warning("http source %s: %s %s from %s refused: %s (%d in %g s; more from it are counted "
                                 "in one line a minute at most)", self.cfg.name, req.method, req.path, req.peer,
                                 what, failures, self.cfg.auth_lockout)
        elif due is not None:
            self._log_summary(*due)
        if blocked:
            self.ctx.log.warning("http source %s: %s blocked for %g s after %d failed token attempts",
                                 self.cfg.name, req.peer, self.cfg.auth_lockout, failures)
        return Reply(401, {"success": False, "error": "missing or wrong token"}, close=True)

    def _log_summary(self, who: str, n: int) -> None:
        """One line for the ``n`` failed token attempts from ``who`` since the last line about it."""
        where = "addresses beyond the throttle's table" if who == OVERFLOW else who
        self.ctx.log.warning("http source %s: %d more failed token attempts from %s since the last line about it",
                             self.cfg.name, n, where)

    def log_summaries(self) -> None:
        """The summary lines due without a new failure (the serving loop calls this every LOG_EVERY s)."""
        for who, n in self.throttle.summaries_due(self.clock(), LOG_EVERY):
            self._log_summary(who, n)

    def _route(self, path: str) -> str | None:
        base = self.cfg.base_path + ROUTE
        return path[len(base):] if path.startswith(base) else None

    async def ingest(self, raw: bytes, *, single: bool) -> Reply:
        """The body on a worker thread: parse, map, commit, and wait for the commit there."""
        return await asyncio.get_running_loop().run_in_executor(self._workers, self.handle, raw, single)

    def handle(self, raw: bytes, single: bool) -> Reply:
        from edge.writer import SpoolFull

        cfg = self.cfg
        parsed = self.parse(raw, single)
        if isinstance(parsed, Reply):
            return parsed
        if isinstance(parsed, str):
            return self._quarantine_body(raw, parsed)
        items, rejected, n = parsed
        self.counters.add(received=n)
        try:
            if rejected:
                # Quarantine first: if that commit fails the whole request fails and is resent.
                futs = [self.ctx.quarantine(cfg.name, r.reason, piece,
                                            {"index": r.index, "route": "single" if single else "batch", **where})
                        for r in rejected for piece, where in _pieces(_event_bytes(r.event))]
                for f in futs:
                    f.result(timeout=cfg.commit_timeout)
            result = self.ctx.submit(items).result(timeout=cfg.commit_timeout) if items else None
        except SpoolFull as exc:
            self.counters.add(refused=1)
            self.ctx.status.set_state(refused_state(exc), f"spool full: {exc}")
            return Reply(503, {"success": False, "error": "spool full: retry later"}, {"Retry-After": str(cfg.retry_after)})
        except TimeoutError:
            self.counters.add(refused=1)
            return Reply(503, {"success": False, "error": "spool commit slow: retry later"},
                         {"Retry-After": str(cfg.retry_after)})
        self.counters.add(accepted=len(items), quarantined=len(rejected))
        self.counters.last_event_time = time.time()
        if rejected:
            self.ctx.status.quarantined(len(rejected))
        if items:
            self.ctx.status.readings(len(items))
        self.ctx.status.set_state(State.LISTENING, self._where())
        body: dict[str, Any] = {"success": True, "accepted": len(items), "quarantined": len(rejected)}
        if result is not None:
            body["firstSeq"], body["lastSeq"] = result.first_seq, result.last_seq
        if rejected:
            body["errors"] = [{"index": r.index, "reason": r.reason} for r in rejected[:20]]
        return Reply(200, body)

    def parse(self, raw: bytes, single: bool) -> tuple[list, list[Rejected], int] | str | Reply:
        """Body -> (items, rejected, events), or the reason to quarantine the whole body, or a refusal."""
        cfg = self.cfg
        try:
            doc = load(raw)
        except BodyError as exc:
            return str(exc)
        if single and isinstance(doc, list) and any(isinstance(e, Unparsed) for e in doc):
            return TOO_DEEP  # quarantined as the body came, not as a list holding an unparsed part
        events = [doc] if single else doc
        if not isinstance(events, list):
            return "batch body must be a JSON array of events"
        if len(events) > cfg.max_batch_events:
            self.counters.add(refused=1)
            return Reply(413, {"success": False, "error": f"more than {cfg.max_batch_events} events: send smaller batches"})
        items, rejected = map_events(events, source=cfg.name, collected_ts=now_us(), max_depth=cfg.max_json_depth)
        rejected = [Rejected(r.index, r.event.reason, r.event) if isinstance(r.event, Unparsed) else r
                    for r in rejected]
        return items, rejected, len(events)

    def _quarantine_body(self, raw: bytes, reason: str) -> Reply:
        from edge.writer import SpoolFull

        try:
            futs = [self.ctx.quarantine(self.cfg.name, reason, piece, {"length": len(raw), **where})
                    for piece, where in _pieces(raw)]
            for f in futs:
                f.result(timeout=self.cfg.commit_timeout)
        except (SpoolFull, TimeoutError):
            return Reply(503, {"success": False, "error": "spool unavailable: retry later"},
                         {"Retry-After": str(self.cfg.retry_after)})
        self.counters.add(quarantined=1)
        self.ctx.status.quarantined(1)
        return Reply(200, {"success": True, "accepted": 0, "quarantined": 1, "errors": [{"index": None, "reason": reason}]})

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

    # --- lifecycle: the server runs its own event loop on its own thread, so parsing never stalls other sources
    def _tls_context(self) -> ssl.SSLContext | None:
        if not self.cfg.tls_cert:
            return None
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.minimum_version = ssl.TLSVersion.TLSv1_2
        tls.load_cert_chain(self.cfg.tls_cert, self.cfg.tls_key)
        return tls

    async def _serve(self, tls: ssl.SSLContext | None, ready: concurrent.futures.Future) -> None:
        cfg = self.cfg
        limits = Limits(max_connections=cfg.max_connections, idle_timeout=cfg.idle_timeout,
                        header_timeout=cfg.header_timeout, body_timeout=cfg.body_timeout)
        host, _, port = cfg.listen.rpartition(":")
        self.server = Server(self.app, limits, tls, self.ctx.log, on_refused=lambda: self.counters.add(refused=1))
        try:
            bound = await self.server.start(host.strip("[]"), int(port))
        except BaseException as exc:
            ready.set_exception(exc)
            return
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        ready.set_result(bound)
        try:
            while not self._stop.is_set():
                try:
                    await asyncio.wait_for(self._stop.wait(), LOG_EVERY)
                except TimeoutError:
                    self.log_summaries()
        finally:
            await self.server.close()

    async def run(self) -> None:
        try:
            tls = self._tls_context()
        except (ssl.SSLError, OSError) as exc:
            self.ctx.status.set_state(State.TLS_ERROR, f"TLS certificate/key unusable: {getattr(exc, 'reason', None) or exc.strerror}")
            raise
        ready: concurrent.futures.Future = concurrent.futures.Future()
        self._workers = concurrent.futures.ThreadPoolExecutor(WORKERS, thread_name_prefix=f"http:{self.cfg.name}:worker")
        thread = threading.Thread(target=lambda: asyncio.run(self._serve(tls, ready)), name=f"http:{self.cfg.name}",
                                  daemon=True)
        thread.start()
        try:
            self.bound_port = await asyncio.wrap_future(ready)
        except OSError as exc:
            self.ctx.status.set_state(State.ERROR, f"cannot listen on {self.cfg.listen}: {exc.strerror}")
            raise
        self.ctx.status.set_state(State.LISTENING, self._where())
        self.ctx.log.info("http source %s listening on %s", self.cfg.name, self._where())
        try:
            await asyncio.Event().wait()
        finally:
            if self._loop is not None and self._stop is not None:
                self._loop.call_soon_threadsafe(self._stop.set)
            await asyncio.to_thread(thread.join, 10)
            self._workers.shutdown(wait=False, cancel_futures=True)

    @property
    def port(self) -> int:
        assert self.bound_port is not None
        return self.bound_port


def _pieces(raw: bytes) -> list[tuple[bytes, dict]]:
    """Quarantined bytes in rows the spool keeps whole (a 200 means the gateway forgets the body, so
    nothing of it is cut): one row, or pieces of ROW_MAX bytes whose meta joins them (``pieces_of``,
    ``part``/``parts``, ``offset``). The side budget still bounds the quarantine as a whole."""
    if len(raw) <= ROW_MAX:
        return [(raw, {})]
    key, parts = os.urandom(6).hex(), -(-len(raw) // ROW_MAX)
    return [(raw[off:off + ROW_MAX], {"pieces_of": key, "part": k + 1, "parts": parts, "offset": off})
            for k, off in enumerate(range(0, len(raw), ROW_MAX))]


def _event_bytes(event: Any) -> bytes:
    """A rejected event as it came, for the quarantine; never raises (it may be nested past any limit)."""
    if isinstance(event, Unparsed):
        return event.raw.encode("utf-8", "replace")
    try:
        return json.dumps(event, default=str).encode()
    except (RecursionError, ValueError, TypeError):
        return b"<event could not be serialised: nested too deeply>"
