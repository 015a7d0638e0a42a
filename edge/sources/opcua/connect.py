"""Opening an OPC-UA client (security, login, our certificate) and reading what went wrong.

``open_client`` is the first step of every session (``collector.Source.connect``);
``classify`` turns a failure into the state an operator sees: ``auth_failed``
(the server refused the user), ``tls_error`` (certificates, security checks),
``connect_failed`` (unreachable), else ``disconnected``. The words come from ``diagnose``: a
security mismatch names the requested policy / mode and lists the endpoints the server offers.
``endpoint_address`` gives the supervisor the host:port to probe while it waits out a backoff.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Awaitable, Callable
from urllib.parse import urlsplit

from asyncua import Client, ua
from asyncua.crypto import security_policies

from edge.sources.context import SourceContext
from edge.sources.states import State
from edge.sources.supervisor import Failure

from . import quietlog
from .config import Config
from .diagnose import NoMatchingEndpoint, describe, explain_connect_error, is_mismatch, status_name
from .security import Pki

# Refusals of our identity: the password or the user is wrong, not the network.
AUTH_CODES = frozenset(("BadUserAccessDenied", "BadIdentityTokenInvalid", "BadIdentityTokenRejected"))
# The server does not speak the security we asked for.
MISMATCH_CODES = frozenset(("BadSecurityPolicyRejected", "BadSecurityModeRejected"))
DEFAULT_PORT = 4840


def endpoint_address(endpoint: str) -> tuple[str, int]:
    """``opc.tcp://host:port/path`` -> (host, port); the port defaults to 4840."""
    parts = urlsplit(endpoint)
    return parts.hostname or "localhost", parts.port or DEFAULT_PORT


def own_cert_path(cfg: Config, pki: Pki) -> str | None:
    """The certificate we present (None with security.mode None: no certificate in use)."""
    return None if cfg.security.mode == "None" else str(pki.own_cert)


def requested(cfg: Config) -> tuple[str, str]:
    """(policy, mode) asked for: mode None has policy None, whatever ``security.policy`` says."""
    mode = cfg.security.mode
    return ("None" if mode == "None" else cfg.security.policy), mode


async def _mismatch(client: Client, cfg: Config) -> NoMatchingEndpoint:
    """The requested security is not offered: read what is (GetEndpoints needs no security)."""
    try:
        endpoints = await asyncio.wait_for(client.connect_and_get_server_endpoints(), cfg.timeout)
    except Exception:  # noqa: BLE001 - the explanation then says the list could not be read
        endpoints = None
    return NoMatchingEndpoint(*requested(cfg), endpoints)


async def open_client(cfg: Config, pki: Pki, app_uri: str, ctx: SourceContext,
                      on_lost: Callable[[Exception], Awaitable[None]]) -> Client:
    sec = cfg.security
    quietlog.install()
    client = Client(cfg.endpoint, timeout=cfg.timeout, watchdog_intervall=cfg.watchdog_interval)
    client.application_uri = app_uri
    client.name = client.description = f"Zerobus Edge {ctx.appliance_id}"
    client.product_uri = "urn:zerobus-edge"
    # A session we could not close stays on the server only this long.
    client.session_timeout = 120_000
    if cfg.username:
        client.set_user(cfg.username)
        client.set_password(str(cfg.password))
    if sec.mode != "None":
        generated = await asyncio.to_thread(pki.ensure_own_certificate, app_uri, sec.certificate_host, sec.certificate_days)
        if generated:
            ctx.status.update(certificate_generated=str(pki.own_cert))
        expires = pki.own_certificate().not_valid_after_utc
        ctx.status.update(certificate_expires=expires.isoformat())
        if expires < datetime.now(timezone.utc):
            # Not replaced silently: servers trust this exact certificate.
            raise Failure(State.TLS_ERROR, f"our application certificate {pki.own_cert} expired on {expires:%Y-%m-%d}; "
                          "delete own/cert.der and own/key.pem to generate a new one, then trust it on the server")
        mode = getattr(ua.MessageSecurityMode, sec.mode)
        try:
            await asyncio.wait_for(client.set_security(
                security_policies.SecurityPolicyBasic256Sha256, str(pki.own_cert), str(pki.own_key), mode=mode),
                cfg.timeout * 2)
        except ua.UaError as exc:
            if not is_mismatch(exc):
                raise
            raise await _mismatch(client, cfg) from None
        client.certificate_validator = await pki.validator()
    client.connection_lost_callback = on_lost
    try:
        await asyncio.wait_for(client.connect(), cfg.timeout * 3)
    except (ua.UaStatusCodeError, ua.UaError) as exc:
        # Mode None against a server without it: the channel or the session is refused.
        if status_name(exc) in MISMATCH_CODES or is_mismatch(exc):
            raise await _mismatch(Client(cfg.endpoint, timeout=cfg.timeout), cfg) from exc
        raise
    finally:
        quietlog.install()  # the loggers asyncua made for this connection
    return client


def classify(exc: BaseException, phase: str, cfg: Config, pki: Pki) -> Failure:
    msg = explain_connect_error(exc, *requested(cfg), own_cert=own_cert_path(cfg, pki))
    code = status_name(exc)
    if pki.last_rejected and code.startswith("BadCertificate"):
        msg = pki.last_rejected  # names the certificate, the code and the real cause
    if code in AUTH_CODES:
        return Failure(State.AUTH_FAILED, f"the server refused the login of user {cfg.username!r}: {msg}")
    if isinstance(exc, NoMatchingEndpoint) or code in MISMATCH_CODES:
        return Failure(State.TLS_ERROR, f"{cfg.endpoint}: {msg}")
    if code.startswith("BadCertificate") or code == "BadSecurityChecksFailed":
        return Failure(State.TLS_ERROR, msg)
    if phase == "connect" and isinstance(exc, (OSError, asyncio.TimeoutError)):
        return Failure(State.CONNECT_FAILED, f"cannot reach {cfg.endpoint}: {msg}")
    return Failure(State.DISCONNECTED, msg)


__all__ = ["AUTH_CODES", "classify", "describe", "endpoint_address", "open_client"]
