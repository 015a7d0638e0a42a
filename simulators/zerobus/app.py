"""Wires the emulator: data dir, tokens, store, gRPC server, HTTP endpoints, faults, shutdown."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import os
import signal
import ssl
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

import grpc

from .faults import FaultError, Faults
from .http_server import HttpServer, Request, Response, json_response
from .ledger import Ledger
from .realism import Profile
from .records import DEFAULT_MAX_RECORD_BYTES, display_decoder
from .schema import Column, load_ddl
from .service import ZerobusService
from .store import Store
from edge.tlsgen import TlsFiles, ensure_tls
from .tokens import TokenIssuer, TokenRequestError, check_token_form, load_key

DEFAULT_TABLE = "main.edge.readings"
DEFAULT_DDL = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "proto", "readings.sql")
# The SDK sends up to 10 MiB - 64 KiB of records per call; the batch framing adds a
# few bytes per record on top, so leave room (grpcio's default is only 4 MiB).
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024


@dataclass
class Options:
    host: str = "0.0.0.0"
    grpc_port: int = 50051
    http_port: int = 8080
    data_dir: str = "./zerobus-emulator-data"
    tables: list[str] = field(default_factory=lambda: [DEFAULT_TABLE])
    ddl: str = DEFAULT_DDL
    client_id: str | None = None
    client_secret: str | None = None
    tls: bool = False
    tls_hostnames: list[str] = field(default_factory=list)
    tls_cert: str | None = None  # given certificate chain + key (e.g. from the Compose init); else generated
    tls_key: str | None = None
    tls_ca: str | None = None  # the CA that issued tls_cert, served at /ca.pem (default: tls_cert itself)
    store: str = "sqlite"  # sqlite | none
    token_ttl_s: int = 3600
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    profile: Profile = field(default_factory=Profile)
    workspace_id: str | None = None  # token requests must name this workspace in `resource` (None: any)


def make_logger(stream: Any = None):
    out = stream or sys.stdout

    def log(event: str, **fields: Any) -> None:
        line = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z",
                "svc": "zerobus-emulator", "event": event, **fields}
        out.write(json.dumps(line, default=str, separators=(",", ":")) + "\n")
        out.flush()

    return log


class Emulator:
    def __init__(self, opts: Options):
        self.opts = opts
        self.log = make_logger()
        os.makedirs(opts.data_dir, exist_ok=True)
        columns = load_ddl(opts.ddl)
        self.tables: dict[str, list[Column]] = {t: columns for t in opts.tables}
        self.issuer = TokenIssuer(load_key(os.path.join(opts.data_dir, "token.key")), opts.token_ttl_s)
        self.ledger = Ledger(opts.tables)
        self.faults = Faults()
        self.store: Store | None = None
        if opts.store == "sqlite":
            self.store = Store(os.path.join(opts.data_dir, "store.sqlite"), self.ledger)
        elif opts.store != "none":
            raise ValueError(f"--store must be sqlite or none, not {opts.store!r}")
        self.service = ZerobusService(self.tables, self.issuer, self.store, self.ledger, self.faults, self.log,
                                      opts.max_record_bytes, opts.profile)
        self.token_requests: list[dict] = []  # the last few, for GET /clients
        self.tls: TlsFiles | None = None
        self.grpc_server: grpc.aio.Server | None = None
        self.grpc_port = opts.grpc_port
        self.http = HttpServer(self.handle_http, self.log)
        self.http_port = opts.http_port
        self.stopping = asyncio.Event()
        self._down_lock = asyncio.Lock()
        self._decoders: dict[tuple, Any] = {}

    # -- lifecycle -----------------------------------------------------------------
    async def run(self) -> None:
        # The store writer drops the GIL for every SQLite statement; with the default
        # 5 ms switch interval it then waits behind the event loop's decoding.
        sys.setswitchinterval(0.0005)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        if self.store is not None:
            t0 = time.monotonic()
            await asyncio.to_thread(self.store.rebuild)
            self.store.start()
            snap = self.ledger.snapshot()["tables"]
            self.log("store_opened", path=self.store.path, seconds=round(time.monotonic() - t0, 3),
                     rows={t: s["rows"] for t, s in snap.items()})
        ssl_ctx = None
        if self.opts.tls_cert:
            ca = self.opts.tls_ca or self.opts.tls_cert
            self.tls = TlsFiles(ca_cert=ca, server_cert=self.opts.tls_cert, server_key=self.opts.tls_key or "", bundle=ca)
            ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_ctx.load_cert_chain(self.tls.server_cert, self.tls.server_key)
        elif self.opts.tls:
            self.tls = ensure_tls(os.path.join(self.opts.data_dir, "tls"), self.opts.tls_hostnames)
            ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_ctx.load_cert_chain(self.tls.server_cert, self.tls.server_key)
        await self._start_grpc()
        self.http_port = await self.http.start(self.opts.host, self.opts.http_port, ssl_ctx)
        self._write_ready()
        self.log("ready", host=self.opts.host, grpc_port=self.grpc_port, http_port=self.http_port, tls=self.opts.tls,
                 tables=sorted(self.tables), store=self.opts.store, data_dir=self.opts.data_dir,
                 ca=self.tls.ca_cert if self.tls else None, ca_bundle=self.tls.bundle if self.tls else None,
                 client_check=self.opts.client_id is not None)
        summary = asyncio.ensure_future(self._summaries())
        await self.stopping.wait()
        summary.cancel()
        self.log("stopping")
        await self.http.close()
        if self.grpc_server is not None:
            await self.grpc_server.stop(grace=1.0)
        if self.store is not None:
            await asyncio.to_thread(self.store.close)
        try:
            os.remove(os.path.join(self.opts.data_dir, "ready.json"))
        except FileNotFoundError:
            pass
        self.log("stopped")

    def _scheme(self) -> str:
        return "https" if self.opts.tls else "http"

    def _write_ready(self) -> None:
        info = {
            "pid": os.getpid(),
            "host": self.opts.host,
            "grpc_port": self.grpc_port,
            "http_port": self.http_port,
            "tls": self.opts.tls,
            "ca": self.tls.ca_cert if self.tls else None,
            "ca_bundle": self.tls.bundle if self.tls else None,
            "tables": sorted(self.tables),
        }
        path = os.path.join(self.opts.data_dir, "ready.json")
        with open(path + ".tmp", "w", encoding="utf-8") as fh:
            json.dump(info, fh)
        os.replace(path + ".tmp", path)

    async def _start_grpc(self) -> None:
        limit = self.opts.max_message_bytes
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                # Never share a port with another process by accident.
                ("grpc.so_reuseport", 0),
            ]
        )
        server.add_generic_rpc_handlers((self.service.handler(),))
        addr = f"{self.opts.host}:{self.grpc_port}"
        if self.tls:
            with open(self.tls.server_key, "rb") as k, open(self.tls.server_cert, "rb") as c:
                creds = grpc.ssl_server_credentials([(k.read(), c.read())])
            port = server.add_secure_port(addr, creds)
        else:
            port = server.add_insecure_port(addr)
        await server.start()
        self.grpc_port = port
        self.grpc_server = server

    async def set_down(self, down: bool) -> None:
        async with self._down_lock:
            if down and self.grpc_server is not None:
                server, self.grpc_server = self.grpc_server, None
                await server.stop(grace=0)
                self.log("grpc_down", port=self.grpc_port)
            elif not down and self.grpc_server is None:
                for attempt in range(50):
                    try:
                        await self._start_grpc()
                        break
                    except RuntimeError:
                        await asyncio.sleep(0.1)
                self.log("grpc_up", port=self.grpc_port)

    async def _summaries(self) -> None:
        last: dict[str, int] = {}
        while True:
            await asyncio.sleep(10)
            snap = self.ledger.snapshot()["tables"]
            for t, s in snap.items():
                if s["rows"] != last.get(t, 0):
                    self.log("ingest_summary", table=t, rows=s["rows"], new_rows=s["rows"] - last.get(t, 0),
                             rows_per_s=round((s["rows"] - last.get(t, 0)) / 10.0, 1), duplicates=s["duplicates"],
                             open_streams=len(self.service.open_streams))
                last[t] = s["rows"]

    # -- HTTP ------------------------------------------------------------------
    async def handle_http(self, req: Request) -> Response:
        path, method = req.path, req.method
        if path == "/healthz" and method == "GET":
            return json_response({"ok": True, "grpc": "down" if self.grpc_server is None else "up",
                                  "grpc_port": self.grpc_port, "tls": self.opts.tls})
        if path == "/stats" and method == "GET":
            snap = self.ledger.snapshot()
            snap["open_streams"] = len(self.service.open_streams)
            snap["perf"] = {
                "process_cpu_s": round(time.process_time(), 3),
                "decode_s": round(self.service.decode_s, 3),
                "commits": self.store.commits if self.store else 0,
                "commit_wall_s": round(self.store.commit_wall_s, 3) if self.store else 0.0,
                "commit_cpu_s": round(self.store.commit_cpu_s, 3) if self.store else 0.0,
            }
            snap["service"] = {**self.service.counters, "throttled_s": round(self.service.counters["throttled_s"], 3),
                               "profile": self.service.effective_profile().as_dict()}
            return json_response(snap)
        if path == "/clients" and method == "GET":
            return json_response({"stream_user_agents": dict(self.service.user_agents),
                                  "open_streams": [{k: st[k] for k in ("id", "table", "user_agent", "records", "acked")}
                                                   for st in self.service.open_streams.values()],
                                  "token_requests": self.token_requests})
        if path == "/faults":
            return await self._faults(req)
        if path == "/oidc/v1/token":
            if method != "POST":
                return json_response({"error": "invalid_request", "error_description": "use POST"}, 405)
            return self._token(req)
        if path == "/ca.pem" and method == "GET":
            if not self.tls:
                return json_response({"error": "TLS is off (start with --tls)"}, 404)
            with open(self.tls.ca_cert, "rb") as fh:
                return Response(200, fh.read(), "application/x-pem-file")
        if path == "/tables" and method == "GET":
            return json_response({t: [{"name": c.name, "type": c.delta_type, "not_null": c.not_null} for c in cols]
                                  for t, cols in self.tables.items()})
        if path.startswith("/tables/") and path.endswith("/rows") and method == "GET":
            return await self._rows(unquote(path[len("/tables/") : -len("/rows")]), req.query)
        return json_response({"error": "not found", "path": path}, 404)

    async def _faults(self, req: Request) -> Response:
        if req.method == "GET":
            return json_response(self.faults.snapshot())
        if req.method == "DELETE":
            self.faults.clear()
            await self.set_down(False)
            self.log("faults_cleared")
            return json_response(self.faults.snapshot())
        if req.method == "POST":
            try:
                snap = self.faults.update(req.json())
            except (FaultError, ValueError) as exc:
                return json_response({"error": str(exc)}, 400)
            await self.set_down(self.faults.down)
            self.log("faults_set", faults=snap["active"])
            return json_response(snap)
        return json_response({"error": "use GET, POST or DELETE"}, 405)

    def _token(self, req: Request) -> Response:
        if self.faults.down:
            return json_response({"error": "temporarily_unavailable"}, 503)
        injected = self.faults.take_token_error()
        if injected:
            self.log("token_refused", status=injected, reason="injected fault")
            return json_response({"error": "injected_fault", "error_description": f"injected HTTP {injected}"}, injected)
        client_id, secret = _basic_auth(req.headers.get("authorization", ""))
        if client_id is None:
            return json_response({"error": "invalid_client", "error_description": "HTTP Basic client credentials required"}, 401)
        if self.opts.client_id is not None and not (
            hmac.compare_digest(client_id.encode(), self.opts.client_id.encode())
            and hmac.compare_digest((secret or "").encode(), (self.opts.client_secret or "").encode())
        ):
            self.log("token_refused", status=401, client_id=client_id, reason="unknown client or wrong secret")
            return json_response({"error": "invalid_client", "error_description": "client authentication failed"}, 401)
        form = {k: v[-1] for k, v in parse_qs(req.body.decode("utf-8", "replace")).items()}
        seen = {"client_id": client_id, "user_agent": req.headers.get("user-agent", ""), "grant_type": form.get("grant_type"),
                "scope": form.get("scope"), "resource": form.get("resource"), "status": 200}
        self.token_requests = (self.token_requests + [seen])[-20:]
        try:
            tables = check_token_form(form, self.opts.workspace_id)
        except TokenRequestError as exc:
            seen["status"] = 400
            self.log("token_refused", status=400, client_id=client_id, reason=exc.description)
            return json_response({"error": exc.error, "error_description": exc.description}, 400)
        seen["tables"] = list(tables)
        token, ttl = self.issuer.issue(client_id, tables)
        self.log("token_issued", client_id=client_id, tables=list(tables), expires_in=ttl, user_agent=seen["user_agent"])
        return json_response({"access_token": token, "token_type": "Bearer", "expires_in": ttl, "scope": form["scope"]})

    async def _rows(self, table: str, query: dict[str, str]) -> Response:
        if table not in self.tables:
            return json_response({"error": f"table {table!r} not found"}, 404)
        if self.store is None:
            return json_response({"error": "this emulator runs with --store none"}, 404)
        try:
            limit = min(int(query.get("limit", "100")), 10_000)
            from_seq = int(query["from_seq"]) if "from_seq" in query else None
        except ValueError:
            return json_response({"error": "limit and from_seq must be integers"}, 400)
        raw = await asyncio.to_thread(self.store.rows, table, query.get("appliance_id"), from_seq, limit)
        return json_response({"table": table, "rows": decode_rows(raw, self.tables[table], self._decoders)})


def decode_rows(raw: list[dict], columns: list[Column], cache: dict) -> list[dict]:
    out = []
    for r in raw:
        key = (r["record_type"], r["descriptor"])
        if key not in cache:
            cache[key] = display_decoder(r["record_type"], r["descriptor"], columns)
        try:
            row = cache[key](r["record"])
        except Exception as exc:  # stored rows were validated; say so rather than hide a row
            row = {"_decode_error": str(exc)}
        row["_meta"] = {k: r[k] for k in ("row_id", "stream_id", "offset_id", "ingest_us", "record_type")}
        out.append(row)
    return out


def _basic_auth(header: str) -> tuple[str | None, str | None]:
    if not header.lower().startswith("basic "):
        return None, None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    cid, sep, secret = decoded.partition(":")
    return (cid, secret) if sep else (None, None)
