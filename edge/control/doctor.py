"""`edge doctor`: the preflight an engineer runs on the DMZ host before go-live.

Each check prints PASS/FAIL with what it saw and, on failure, a hint. The
exit code is 0 only if every check passed. Checks, in order, each skipped (and
failed) when something it depends on failed:

1. DNS and TCP reachability of the workspace and the ZeroBus endpoint, through
   the proxy the SDK would use (HTTP CONNECT), if any.
2. TLS with verification (naming the certificate problem).
3. The OAuth M2M token, requested exactly as the ZeroBus SDK does.
4. Clock skew against the workspace's Date header.
5. The target table exists and is a managed Delta table.
6. Its schema matches the reading message 1:1 (every difference listed).
7. The service principal can write: a real ZeroBus stream opened and closed, no data.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from email.utils import parsedate_to_datetime
from typing import Callable

from edge.config import Config
from edge.egress import proxy_for, target, tls_hint
from edge.redact import Scrubber, redact_url

MAX_SKEW_S = 30.0


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    hint: str = ""

    def line(self) -> str:
        out = f"{'PASS' if self.ok else 'FAIL'}  {self.name:<28} {self.detail}"
        if not self.ok and self.hint:
            out += f"\n      hint: {self.hint}"
        return out


@dataclass
class Doctor:
    cfg: Config
    env: dict = field(default_factory=lambda: dict(os.environ))
    timeout: float = 10.0
    checks: list[Check] = field(default_factory=list)
    _token_date: float | None = None

    def _add(self, name: str, ok: bool, detail: str, hint: str = "") -> bool:
        # Every detail passes the one scrubber (edge.redact): an SDK's or a workspace's error may
        # quote the secret, the Basic pair made from it or a bearer token.
        z = self.cfg.zerobus
        scrub = Scrubber(z.client_id, str(z.client_secret))
        c = Check(name, ok, scrub(detail), hint)
        self.checks.append(c)
        return ok

    # ---------------------------------------------------------------- network
    def reach(self, label: str, url: str, purpose: str) -> bool:
        t = target(url)
        proxy = proxy_for(url, self.env, purpose=purpose)
        if proxy:
            p = target(proxy if "://" in proxy else f"http://{proxy}")
            if not self._dns(f"dns {label} proxy", p.host):
                return False
            try:
                sock = socket.create_connection((p.host, p.port), timeout=self.timeout)
            except OSError as exc:
                return self._add(f"tcp {label}", False, f"proxy {redact_url(proxy)}: {exc.strerror or exc}",
                                 "the proxy does not answer: check https_proxy / grpc_proxy and the DMZ firewall")
            try:
                sock.sendall(f"CONNECT {t.host}:{t.port} HTTP/1.1\r\nHost: {t.host}:{t.port}\r\n{_proxy_auth(proxy)}\r\n".encode())
                status = _read_status(sock, self.timeout)
            except OSError as exc:
                sock.close()
                return self._add(f"tcp {label}", False, f"CONNECT via {redact_url(proxy)}: {exc}", "the proxy closed the tunnel")
            if status != 200:
                sock.close()
                return self._add(f"tcp {label}", False, f"proxy {redact_url(proxy)} answered CONNECT with {status}",
                                 "the proxy refuses this destination: ask for an allow rule for host:port"
                                 + (" (407: proxy credentials)" if status == 407 else ""))
            self._add(f"tcp {label}", True, f"{t.host}:{t.port} via CONNECT proxy {redact_url(proxy)}")
        else:
            if not self._dns(f"dns {label}", t.host):
                return False
            try:
                sock = socket.create_connection((t.host, t.port), timeout=self.timeout)
            except OSError as exc:
                return self._add(f"tcp {label}", False, f"{t.host}:{t.port}: {exc.strerror or exc}",
                                 "outbound traffic is blocked or the endpoint is wrong: the DMZ firewall must allow "
                                 f"TCP {t.port} to {t.host} (or set https_proxy)")
            self._add(f"tcp {label}", True, f"{t.host}:{t.port} direct")
        try:
            if t.tls:
                return self._tls(label, sock, t.host)
            return True
        finally:
            sock.close()

    def _dns(self, name: str, host: str) -> bool:
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            return self._add(name, False, f"{host}: {exc.strerror}",
                             "the DMZ resolver does not know this name (Private Link needs its private DNS zone)")
        addrs = sorted({i[4][0] for i in infos})
        return self._add(name, True, f"{host} -> {', '.join(addrs[:3])}")

    def _tls(self, label: str, sock: socket.socket, host: str) -> bool:
        ctx = ssl.create_default_context()  # honours SSL_CERT_FILE / SSL_CERT_DIR, as the SDK does
        try:
            with ctx.wrap_socket(sock, server_hostname=host) as tls:
                cert = tls.getpeercert() or {}
                issuer = dict(x[0] for x in cert.get("issuer", ()))
                return self._add(f"tls {label}", True, f"{tls.version()}, issuer {issuer.get('organizationName') or issuer.get('commonName', '?')}")
        except ssl.SSLCertVerificationError as exc:
            return self._add(f"tls {label}", False, f"certificate not trusted: {exc.verify_message}",
                             tls_hint(exc.verify_code, exc.verify_message or ""))
        except (ssl.SSLError, OSError) as exc:
            return self._add(f"tls {label}", False, str(exc), tls_hint(None, str(exc)))

    # ---------------------------------------------------------------- OAuth
    def token(self) -> bool:
        z = self.cfg.zerobus
        catalog, schema, _ = z.table.split(".")
        workspace_id = target(z.endpoint).host.split(".")[0]
        details = [
            {"type": "unity_catalog_privileges", "privileges": ["USE CATALOG"], "object_type": "CATALOG",
             "object_full_path": catalog},
            {"type": "unity_catalog_privileges", "privileges": ["USE SCHEMA"], "object_type": "SCHEMA",
             "object_full_path": f"{catalog}.{schema}"},
            {"type": "unity_catalog_privileges", "privileges": ["SELECT", "MODIFY"], "object_type": "TABLE",
             "object_full_path": z.table, "operations": ["zerobuswrite"]},
        ]
        form = urllib.parse.urlencode({
            "grant_type": "client_credentials", "scope": "all-apis",
            "resource": f"api://databricks/workspaces/{workspace_id}/zerobusDirectWriteApi",
            "authorization_details": json.dumps(details),
        }).encode()
        basic = base64.b64encode(f"{z.client_id}:{z.client_secret}".encode()).decode()
        req = urllib.request.Request(f"{z.workspace_url}/oidc/v1/token", data=form, method="POST",
                                     headers={"Authorization": f"Basic {basic}",
                                              "Content-Type": "application/x-www-form-urlencoded"})
        opener = _opener(self.env, z.workspace_url)
        try:
            with opener.open(req, timeout=self.timeout) as resp:
                body = json.loads(resp.read() or b"{}")
                self._note_date(resp.headers.get("Date"))
        except urllib.error.HTTPError as exc:
            self._note_date(exc.headers.get("Date") if exc.headers else None)
            hint = ("the client id/secret are wrong, or the service principal lacks USE CATALOG / USE SCHEMA / "
                    "MODIFY+SELECT on the table (edge table create prints the GRANTs)") if 400 <= exc.code < 500 else \
                   "the workspace had a server error: retry later"
            return self._add("oauth token", False, f"HTTP {exc.code} from {z.workspace_url}/oidc/v1/token", hint)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            return self._add("oauth token", False, f"{reason}", "see the tcp/tls checks above")
        if not body.get("access_token"):
            return self._add("oauth token", False, "the answer has no access_token", "is workspace_url the workspace?")
        return self._add("oauth token", True, f"issued for client {z.client_id}, expires in {body.get('expires_in', '?')} s")

    def _note_date(self, header: str | None) -> None:
        if header:
            try:
                self._token_date = parsedate_to_datetime(header).timestamp()
            except (TypeError, ValueError):  # no usable Date header: the clock check says it has nothing to compare
                pass

    def clock(self) -> bool:
        if self._token_date is None:
            return self._add("clock skew", False, "the workspace sent no Date header", "cannot compare clocks")
        skew = time.time() - self._token_date
        ok = abs(skew) <= MAX_SKEW_S
        return self._add("clock skew", ok, f"{skew:+.1f} s against the workspace",
                         "this host's clock is off: timestamps and token expiry depend on it; enable NTP")

    # ---------------------------------------------------------------- table
    def table(self) -> bool:
        from edge import databricks

        z = self.cfg.zerobus
        try:
            w = databricks.client(z, timeout_s=self.timeout)
            info = databricks.table_info(w, z.table)
        except databricks.WorkspaceError as exc:
            missing = "does not exist" in str(exc).lower() or "not found" in str(exc).lower()
            self._add("table exists", False, str(exc),
                      "create it with `edge table create` (or hand `edge table ddl` to a workspace admin)" if missing
                      else "the service principal cannot read the table's metadata (USE CATALOG / USE SCHEMA)")
            return False
        except Exception as exc:  # client construction (auth discovery) failures
            self._add("table exists", False, f"{type(exc).__name__}: {str(exc)[:200]}", "see the oauth token check")
            return False
        self._add("table exists", True, f"{z.table} ({len(info.columns or [])} columns)")
        problems = databricks.table_problems(info)
        self._add("table managed delta", not problems, "; ".join(problems) or f"{z.table} is a managed Delta table",
                  "ZeroBus writes only to managed Delta tables: recreate it with `edge table create`")
        diffs = databricks.schema_differences(info)
        self._add("table schema", not diffs, "matches the reading message 1:1" if not diffs else
                  f"{len(diffs)} difference(s):\n        - " + "\n        - ".join(diffs),
                  "ZeroBus has no schema evolution: the table must match proto/readings.sql exactly")
        return not problems and not diffs

    def stream(self) -> bool:
        """Open a real ZeroBus stream and close it without sending data."""
        from zerobus.sdk.shared import StreamConfigurationOptions, TableProperties
        from zerobus.sdk.sync import ZerobusSdk

        from edge.pb.reading_pb2 import Reading

        z = self.cfg.zerobus
        result: dict = {}

        def attempt() -> None:
            try:
                sdk = ZerobusSdk(z.endpoint, z.workspace_url, application_name=z.application_name)
                opts = StreamConfigurationOptions(recovery=False, recovery_timeout_ms=int(self.timeout * 1000))
                stream = sdk.create_stream(client_id=z.client_id, client_secret=str(z.client_secret),
                                           table_properties=TableProperties(z.table, Reading.DESCRIPTOR), options=opts)
                stream.close()
                result["ok"] = True
            except Exception as exc:
                result["error"] = exc

        t = threading.Thread(target=attempt, daemon=True)
        t.start()
        t.join(self.timeout * 3)
        if result.get("ok"):
            return self._add("zerobus write", True, f"stream to {z.table} opened and closed at {z.endpoint}")
        exc = result.get("error")
        if exc is None:
            return self._add("zerobus write", False, f"no answer from {z.endpoint} in {self.timeout * 3:.0f} s",
                             "the gRPC endpoint is not reachable (see tcp/tls checks) or a proxy blocks HTTP/2")
        text = str(exc) or type(exc).__name__
        return self._add("zerobus write", False, text.splitlines()[0][:300],
                         "PERMISSION_DENIED/UNAUTHENTICATED: grant the service principal MODIFY and SELECT on the "
                         "table; INVALID_ARGUMENT: the table schema differs (see above)")

    # ---------------------------------------------------------------- all
    def run(self, *, with_stream: bool = True) -> list[Check]:
        z = self.cfg.zerobus
        ws_ok = self.reach("workspace", z.workspace_url, "https")
        zb_ok = self.reach("zerobus endpoint", z.endpoint, "grpc")
        if ws_ok:
            if self.token():
                self.clock()
                self.table()
        else:
            self._add("oauth token", False, "skipped: the workspace is not reachable", "fix the checks above first")
        if with_stream:
            if zb_ok and ws_ok:
                self.stream()
            else:
                self._add("zerobus write", False, "skipped: an endpoint is not reachable", "fix the checks above first")
        return self.checks


def _opener(env: dict, url: str) -> urllib.request.OpenerDirector:
    proxy = proxy_for(url, env, purpose="https")
    handlers: list = [urllib.request.HTTPSHandler(context=ssl.create_default_context())]
    handlers.append(urllib.request.ProxyHandler({target(url).scheme: proxy} if proxy else {}))
    return urllib.request.build_opener(*handlers)


def _proxy_auth(proxy: str) -> str:
    u = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if u.username:
        cred = base64.b64encode(f"{urllib.parse.unquote(u.username)}:{urllib.parse.unquote(u.password or '')}".encode())
        return f"Proxy-Authorization: Basic {cred.decode()}\r\n"
    return ""


def _read_status(sock: socket.socket, timeout: float) -> int:
    sock.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf and len(buf) < 16384:
        chunk = sock.recv(4096)
        if not chunk:
            break
        buf += chunk
    line = buf.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split()
    return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0


def report(checks: list[Check], as_json: bool = False, out: Callable[[str], None] = print) -> int:
    if as_json:
        out(json.dumps({"ok": all(c.ok for c in checks), "checks": [asdict(c) for c in checks]}, indent=2))
    else:
        for c in checks:
            out(c.line())
        failed = sum(not c.ok for c in checks)
        out(f"\ndoctor: {failed} of {len(checks)} checks FAILED" if failed else f"\ndoctor: all {len(checks)} checks passed")
    return 0 if all(c.ok for c in checks) else 1
