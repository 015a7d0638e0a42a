"""A local stand-in for the few Databricks workspace REST calls the appliance makes.

No workspace is reachable from a test machine, so `edge doctor`, `edge table
create` and the drill's real-table verification are exercised against this:

    GET  /.well-known/databricks-config                 host metadata (databricks-sdk reads it first)
    GET  /oidc/.well-known/oauth-authorization-server   OAuth discovery (databricks-sdk)
    POST /oidc/v1/token                                 client-credentials tokens (HMAC-signed, stateless)
    GET  /api/2.1/unity-catalog/tables/{full_name}      TableInfo: type, format, columns
    POST /api/2.0/sql/statements                        Statement Execution API (synchronous answers)
    GET  /api/2.0/sql/statements/{id}                   the same result again

Tables are registered by a CREATE TABLE statement (or `--table` at start, with the
schema of our DDL). Their rows are the ZeroBus emulator's store (`--store`,
read-only): a SELECT on ``catalog.schema.table`` runs in SQLite over the
emulator's landed rows for that table, with the statement's named parameters.
The table has the columns its DDL declares, no more, no fewer: the key columns
the emulator stores (appliance_id, seq, kind, loss_from_seq, loss_to_seq) and
every other one decoded from the landed record bytes with the stream's own
descriptor (source, point, loss_reason, value_json, ...), only for the rows a
statement reads. Values as SQLite holds them: TIMESTAMP as ISO-8601 UTC text
(the wire's microseconds), VARIANT as the JSON text that landed, BOOLEAN as 1/0.
GRANT statements are recorded and answered SUCCEEDED. Anything else FAILS the
way the API does (state FAILED with an error message, HTTP 200).

It is a test double for wire shapes, not a SQL engine: the SELECTs it can run are
those SQLite understands (the appliance's verification queries are written in
the common subset: CTEs, LEAD() OVER, COUNT(DISTINCT), named parameters).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import sqlite3
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

from simulators.zerobus.records import display_decoder
from simulators.zerobus.schema import parse_ddl

_TABLE_NAME = re.compile(r"`?([A-Za-z0-9_]+)`?\.`?([A-Za-z0-9_]+)`?\.`?([A-Za-z0-9_]+)`?")
_TYPE_NAME = {  # Delta type text -> the API's ColumnTypeName
    "BIGINT": "LONG", "INT": "INT", "INTEGER": "INT", "SMALLINT": "SHORT", "TINYINT": "BYTE",
    "DOUBLE": "DOUBLE", "FLOAT": "FLOAT", "STRING": "STRING", "BOOLEAN": "BOOLEAN", "BINARY": "BINARY",
    "TIMESTAMP": "TIMESTAMP", "TIMESTAMP_NTZ": "TIMESTAMP_NTZ", "DATE": "DATE", "VARIANT": "VARIANT",
}
_PARAM_CASTS = {"BIGINT": int, "INT": int, "LONG": int, "DOUBLE": float, "FLOAT": float, "STRING": str, None: str}


class Workspace:
    """State of the fake workspace: tables, grants, issued statements. Thread-safe."""

    def __init__(self, *, store: str | None, data_dir: Path, client_id: str | None, client_secret: str | None,
                 warehouse_id: str, table_type: str = "MANAGED", data_source_format: str = "DELTA",
                 token_upstream: str | None = None):
        self.store = store
        self.data_dir = data_dir
        self.client_id = client_id
        self.client_secret = client_secret
        self.warehouse_id = warehouse_id
        self.table_type = table_type
        self.data_source_format = data_source_format
        self.token_upstream = token_upstream
        self.lock = threading.Lock()
        data_dir.mkdir(parents=True, exist_ok=True)
        key_file = data_dir / "token.key"
        if not key_file.exists():
            key_file.write_bytes(secrets.token_bytes(32))
        self.key = key_file.read_bytes()
        self.state_file = data_dir / "workspace.json"
        state = json.loads(self.state_file.read_text()) if self.state_file.exists() else {}
        self.tables: dict[str, dict] = state.get("tables", {})
        self.grants: list[str] = state.get("grants", [])
        self.statements: dict[str, dict] = {}
        self.log: list[dict] = []  # every statement received, for tests

    def save(self) -> None:
        self.state_file.write_text(json.dumps({"tables": self.tables, "grants": self.grants}, indent=1))

    # --- tokens
    def issue_token(self, client_id: str, ttl: int = 3600) -> str:
        claims = base64.urlsafe_b64encode(json.dumps({"sub": client_id, "exp": int(time.time()) + ttl}).encode())
        sig = base64.urlsafe_b64encode(hmac.new(self.key, claims, hashlib.sha256).digest())
        return f"{claims.decode()}.{sig.decode()}"

    def token_ok(self, token: str) -> bool:
        try:
            claims, sig = token.encode().split(b".")
            want = base64.urlsafe_b64encode(hmac.new(self.key, claims, hashlib.sha256).digest())
            return hmac.compare_digest(sig, want) and json.loads(base64.urlsafe_b64decode(claims))["exp"] > time.time()
        except Exception:
            return False

    # --- tables
    def register(self, full_name: str, ddl: str) -> None:
        cols = parse_ddl(ddl)
        catalog, schema, name = full_name.split(".")
        self.tables[full_name.lower()] = {
            "name": name, "catalog_name": catalog, "schema_name": schema, "full_name": full_name,
            "table_type": self.table_type, "data_source_format": self.data_source_format,
            "columns": [
                {"name": c.name, "type_text": c.delta_type.lower(), "type_name": _TYPE_NAME.get(c.delta_type, c.delta_type),
                 "nullable": not c.not_null, "position": i}
                for i, c in enumerate(cols)
            ],
        }
        self.save()

    # --- statements
    def execute(self, body: dict) -> dict:
        sid = uuid.uuid4().hex
        statement = str(body.get("statement", ""))
        self.log.append(body)
        if body.get("warehouse_id") != self.warehouse_id:
            return {"_http": 404, "error_code": "RESOURCE_DOES_NOT_EXIST",
                    "message": f"SQL warehouse {body.get('warehouse_id')!r} does not exist."}
        try:
            result = self._run(statement, body.get("parameters") or [])
            out = {"statement_id": sid, "status": {"state": "SUCCEEDED"}, **result}
        except Exception as exc:  # the API reports failures in the body, HTTP 200
            out = {"statement_id": sid, "status": {"state": "FAILED", "error": {"error_code": "BAD_REQUEST",
                                                                                  "message": str(exc)}}}
        self.statements[sid] = out
        return out

    def _run(self, statement: str, parameters: list[dict]) -> dict:
        s = statement.strip().rstrip(";")
        head = s.split(None, 1)[0].upper() if s else ""
        if head == "CREATE":
            m = re.match(r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(\S+)", s, re.I)
            if not m:
                raise ValueError("only CREATE TABLE is supported here")
            full = m.group(1).replace("`", "")
            with self.lock:
                if full.lower() not in self.tables:
                    self.register(full, s)
            return _empty()
        if head == "GRANT":
            with self.lock:
                self.grants.append(s)
                self.save()
            return _empty()
        if head not in ("SELECT", "WITH"):
            raise ValueError(f"[UNSUPPORTED] {head} is not supported by this test workspace")
        return self._select(s, parameters)

    def _select(self, sql: str, parameters: list[dict]) -> dict:
        names = {m.group(0).replace("`", "").lower(): m.group(0) for m in _TABLE_NAME.finditer(sql)}
        for full in names:
            if full not in self.tables:
                raise ValueError(f"[TABLE_OR_VIEW_NOT_FOUND] The table or view `{full}` cannot be found.")
        if not self.store:
            raise ValueError("this test workspace has no row store configured")
        conn = sqlite3.connect(f"file:{self.store}?mode=ro", uri=True, timeout=10)
        try:
            conn.execute("BEGIN")  # one snapshot: every stream a row names is among the streams read first
            conn.create_function("_landed", 4, _Landed(conn).column, deterministic=True)
            for i, (full, text) in enumerate(names.items()):
                view = f"t{i}"
                conn.execute(f"CREATE TEMP VIEW {view} AS SELECT {_view_columns(self.tables[full]['columns'])} "
                             f"FROM rows r JOIN batches b ON b.id = r.batch_id WHERE lower(b.table_name) = {_quote(full)}")
                sql = sql.replace(text, view)
            params = {p["name"]: _PARAM_CASTS.get((p.get("type") or "STRING").upper(), str)(p["value"])
                      if p.get("value") is not None else None for p in parameters}
            cur = conn.execute(sql, params)
            cols = [d[0] for d in cur.description or []]
            rows = [[_text(v) for v in row] for row in cur.fetchall()]
        finally:
            conn.close()
        return {
            "manifest": {"format": "JSON_ARRAY", "schema": {"column_count": len(cols), "columns": [
                {"name": c, "position": i, "type_name": "STRING", "type_text": "STRING"} for i, c in enumerate(cols)]},
                "total_row_count": len(rows), "total_chunk_count": 1, "truncated": False},
            "result": {"chunk_index": 0, "row_offset": 0, "row_count": len(rows), "data_array": rows},
        }


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# Columns the emulator's store keeps per row; the rest are in the record bytes.
_STORED = ("appliance_id", "seq", "kind", "loss_from_seq", "loss_to_seq")


def _view_columns(columns: list[dict]) -> str:
    return ", ".join(f'r.{c["name"]}' if c["name"] in _STORED
                     else f'_landed(b.stream_id, r.record, {_quote(c["name"])}, {_quote(c["type_text"])}) AS "{c["name"]}"'
                     for c in columns)


class _Landed:
    """One column of a landed record, decoded with its stream's descriptor (SQLite asks column by
    column, so the last record decoded is kept)."""

    def __init__(self, conn: sqlite3.Connection):
        self.decoders = {sid: display_decoder(rtype, desc, [])
                         for sid, rtype, desc in conn.execute("SELECT stream_id, record_type, descriptor FROM streams")}
        self.last: tuple[Any, Any, dict] = (None, None, {})

    def column(self, stream_id: str, record: bytes, name: str, type_text: str) -> Any:
        if self.last[0] != stream_id or self.last[1] != record:
            self.last = (stream_id, record, self.decoders[stream_id](record))
        return _sql_value(self.last[2].get(name), type_text)


def _sql_value(v: Any, type_text: str) -> Any:
    if v is None:
        return None
    if type_text.startswith("timestamp") and isinstance(v, int):
        return (_EPOCH + timedelta(microseconds=v)).isoformat(timespec="microseconds").replace("+00:00", "Z")
    if isinstance(v, bool):
        return int(v)
    return v


def _text(v: Any) -> str | None:
    """A value as the Statement Execution API's JSON_ARRAY carries it: text (bytes as base64)."""
    if v is None:
        return None
    return base64.b64encode(v).decode() if isinstance(v, bytes) else str(v)


def _quote(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _empty() -> dict:
    return {"manifest": {"format": "JSON_ARRAY", "schema": {"column_count": 0, "columns": []}, "total_row_count": 0},
            "result": {"row_count": 0, "data_array": []}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    ws: Workspace

    def log_message(self, fmt: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("Date", formatdate(usegmt=True))
        self.end_headers()
        self.wfile.write(raw)

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _authorized(self) -> bool:
        auth = self.headers.get("Authorization", "")
        return auth.startswith("Bearer ") and self.ws.token_ok(auth[7:])

    def _base(self) -> str:
        return f"http://{self.headers.get('Host')}"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/oidc/.well-known/oauth-authorization-server":
            self._send(200, {"authorization_endpoint": self._base() + "/oidc/v1/authorize",
                             "token_endpoint": self._base() + "/oidc/v1/token"})
            return
        if path == "/.well-known/databricks-config":
            self._send(200, {"oidc_endpoint": self._base() + "/oidc", "workspace_id": "1234567890", "cloud": "aws"})
            return
        if path == "/healthz":
            self._send(200, {"ok": True})
            return
        if not self._authorized():
            self._send(401, {"error_code": "UNAUTHENTICATED", "message": "Invalid access token."})
            return
        if path.startswith("/api/2.1/unity-catalog/tables/"):
            full = unquote(path.rsplit("/", 1)[1]).lower()
            info = self.ws.tables.get(full)
            if info is None:
                self._send(404, {"error_code": "TABLE_DOES_NOT_EXIST", "message": f"Table '{full}' does not exist."})
            else:
                self._send(200, info)
        elif path.startswith("/api/2.0/sql/statements/"):
            out = self.ws.statements.get(path.rsplit("/", 1)[1])
            self._send(200 if out else 404, out or {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such statement"})
        elif path == "/_test/statements":
            self._send(200, {"statements": self.ws.log, "grants": self.ws.grants})
        else:
            self._send(404, {"error_code": "ENDPOINT_NOT_FOUND", "message": f"No API found for 'GET {path}'"})

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        raw = self._body()
        if path == "/oidc/v1/token":
            self._token(raw)
            return
        if not self._authorized():
            self._send(401, {"error_code": "UNAUTHENTICATED", "message": "Invalid access token."})
            return
        if path == "/api/2.0/sql/statements" or path == "/api/2.0/sql/statements/":
            out = self.ws.execute(json.loads(raw or b"{}"))
            status = out.pop("_http", 200)
            self._send(status, out)
        else:
            self._send(404, {"error_code": "ENDPOINT_NOT_FOUND", "message": f"No API found for 'POST {path}'"})

    def _token(self, raw: bytes) -> None:
        form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        if self.ws.token_upstream and "authorization_details" in form:
            self._relay_token(raw)
            return
        cid, secret = form.get("client_id"), form.get("client_secret")
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            cid, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
        if form.get("grant_type") != "client_credentials" or not cid:
            self._send(400, {"error": "invalid_request", "error_description": "client_credentials grant expected"})
            return
        ws = self.ws
        if ws.client_id is not None and not (cid == ws.client_id and hmac.compare_digest(secret or "", ws.client_secret or "")):
            self._send(401, {"error": "invalid_client", "error_description": "Client authentication failed"})
            return
        self._send(200, {"access_token": ws.issue_token(cid), "token_type": "Bearer", "expires_in": 3600,
                         "scope": form.get("scope", "all-apis")})


    def _relay_token(self, raw: bytes) -> None:
        """ZeroBus token requests go to the emulator, whose streams accept only its own tokens.

        In a real workspace one host serves both kinds of token; here two processes do.
        """
        import urllib.error
        import urllib.request

        req = urllib.request.Request(self.ws.token_upstream, data=raw, method="POST", headers={
            "Content-Type": self.headers.get("Content-Type", "application/x-www-form-urlencoded"),
            "Authorization": self.headers.get("Authorization", ""),
        })
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                self._send(resp.status, json.loads(resp.read()))
        except urllib.error.HTTPError as exc:
            self._send(exc.code, json.loads(exc.read() or b"{}"))


def serve(ws: Workspace, host: str, port: int) -> ThreadingHTTPServer:
    handler = type("WorkspaceHandler", (Handler,), {"ws": ws})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server
