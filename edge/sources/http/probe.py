"""``edge doctor --sources`` for an ``http`` (Ignition) source: the listener and its TLS files.

This source is a server, so there is nothing to reach: the ``listen`` check binds the address
(PASS: free for the appliance), or, when the port is taken, asks ``GET <base>/system/zerobus/health``
whether the one listening is this appliance's source (PASS) or another program (FAIL). With
``tls_cert`` / ``tls_key`` the ``tls`` check loads the pair as the server would and looks at
the certificate's validity. The token is checked by the config (at least 16 characters).
"""

from __future__ import annotations

import asyncio
import errno
import json
import socket
import ssl
from datetime import datetime, timedelta, timezone

from cryptography import x509

from edge.configtypes import check_listen
from edge.control.probing import Check, Checks
from edge.sources.http.collector import ROUTE
from edge.sources.http.config import Config

EXPIRY_WARN = timedelta(days=30)


def bind_hint(err: int, host: str, port: int, cfg: Config) -> str:
    if err == errno.EACCES:
        return f"ports below 1024 need privileges: use a port above 1024 in {cfg.name}.listen (8088)"
    if err == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this host: use 0.0.0.0 or one of its interface addresses in {cfg.name}.listen"
    return f"cannot listen on {host}:{port}: check {cfg.name}.listen"


def try_bind(host: str, port: int) -> OSError | None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio.start_server does
        try:
            s.bind((host, port))
        except OSError as exc:
            return exc
    return None


async def health(host: str, port: int, path: str, timeout: float) -> dict | None:
    """The health document of whoever listens (plain HTTP), or None when it is not ours."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(65536), timeout)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        return None
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) and "moduleLoaded" in doc else None


async def check_listener(checks: Checks, cfg: Config, timeout: float) -> None:
    host, port = check_listen(cfg.listen, f"{cfg.name}.listen")
    shown = f"{host or '0.0.0.0'}:{port}"
    err = try_bind(host or "0.0.0.0", port)
    if err is None:
        checks.passed("listen", f"{shown} is free: the source can listen there")
        return
    if err.errno != errno.EADDRINUSE:
        checks.fail("listen", f"cannot bind {shown}: {err.strerror}", bind_hint(err.errno or 0, host, port, cfg))
        return
    if cfg.tls_cert:
        checks.passed("listen", f"{shown} is listening (TLS; its answer is not inspected)")
        return
    target = "127.0.0.1" if host in ("", "0.0.0.0") else ("::1" if host == "::" else host)
    try:
        doc = await health(target, port, f"{cfg.base_path}{ROUTE}/health", timeout)
    except (OSError, asyncio.TimeoutError, TimeoutError) as exc:
        doc, why = None, f" ({type(exc).__name__})"
    else:
        why = ""
    if doc is not None:
        checks.passed("listen", f"{shown} is listening: the appliance's http source answers (version {doc.get('version')})")
        return
    checks.fail("listen", f"{shown} is taken by another program{why}",
                f"stop the other program on port {port}, or move {cfg.name}.listen to a free port")


def check_tls(checks: Checks, cfg: Config) -> None:
    if not cfg.tls_cert:
        checks.warn("tls", "plain HTTP: the gateway's token travels in clear text",
                    f"set {cfg.name}.tls_cert / tls_key unless the gateway is on the same trusted network")
        return
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cfg.tls_cert, cfg.tls_key)
        with open(cfg.tls_cert, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
    except (OSError, ssl.SSLError, ValueError) as exc:
        checks.fail("tls", f"cannot load {cfg.tls_cert} / {cfg.tls_key}: {getattr(exc, 'strerror', None) or exc}",
                    f"check {cfg.name}.tls_cert / tls_key: PEM files, readable by the appliance, the key of that certificate")
        return
    now = datetime.now(timezone.utc)
    until = cert.not_valid_after_utc
    if until < now:
        checks.fail("tls", f"the certificate {cert.subject.rfc4514_string()} expired on {until:%Y-%m-%d}",
                    "renew it: gateways refuse an expired certificate")
    elif until - now < EXPIRY_WARN:
        checks.warn("tls", f"the certificate {cert.subject.rfc4514_string()} expires on {until:%Y-%m-%d}",
                    "renew it before it expires")
    else:
        checks.passed("tls", f"certificate {cert.subject.rfc4514_string()} and key load; valid until {until:%Y-%m-%d}")


async def probe(cfg: Config, timeout: float, *, appliance_id: str = "", data_dir: str = ".") -> list[Check]:
    checks = Checks(cfg.name)
    await check_listener(checks, cfg, timeout)
    check_tls(checks, cfg)
    return checks.rows


__all__ = ["bind_hint", "probe"]
