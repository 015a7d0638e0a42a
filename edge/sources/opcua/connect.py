"""Opening an OPC-UA client (security, login, our certificate) and reading what went wrong.

``open_client`` is the first step of every session (``collector.Source.connect``);
``classify`` turns a failure into the state an operator sees: ``auth_failed``
(the server refused the user), ``tls_error`` (certificates, security checks),
``connect_failed`` (unreachable), else ``disconnected``.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Awaitable, Callable

from asyncua import Client, ua
from asyncua.crypto import security_policies

from edge.sources.context import SourceContext
from edge.sources.states import State
from edge.sources.supervisor import Failure

from .config import Config
from .security import Pki

# Refusals of our identity: the password or the user is wrong, not the network.
AUTH_CODES = frozenset(("BadUserAccessDenied", "BadIdentityTokenInvalid", "BadIdentityTokenRejected"))


async def open_client(cfg: Config, pki: Pki, app_uri: str, ctx: SourceContext,
                      on_lost: Callable[[Exception], Awaitable[None]]) -> Client:
    sec = cfg.security
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
        await asyncio.wait_for(client.set_security(
            security_policies.SecurityPolicyBasic256Sha256, str(pki.own_cert), str(pki.own_key), mode=mode),
            cfg.timeout * 2)
        client.certificate_validator = await pki.validator()
    client.connection_lost_callback = on_lost
    await asyncio.wait_for(client.connect(), cfg.timeout * 3)
    return client


def classify(exc: BaseException, phase: str, cfg: Config, pki: Pki) -> Failure:
    msg = describe(exc)
    if pki.last_rejected and "Certificate" in msg:
        msg = f"{msg}; {pki.last_rejected}"
    code = ua.StatusCode(exc.code).name if isinstance(exc, ua.UaStatusCodeError) else ""
    if code in AUTH_CODES:
        return Failure(State.AUTH_FAILED, f"the server refused the login of user {cfg.username!r}: {msg}")
    if code.startswith("BadCertificate") or code == "BadSecurityChecksFailed":
        return Failure(State.TLS_ERROR, msg)
    if phase == "connect" and isinstance(exc, (OSError, asyncio.TimeoutError)):
        return Failure(State.CONNECT_FAILED, f"cannot reach {cfg.endpoint}: {msg}")
    return Failure(State.DISCONNECTED, msg)


def describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, ua.UaStatusCodeError):
        return f"{type(exc).__name__} ({ua.StatusCode(exc.code).name}): {exc}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text


__all__ = ["AUTH_CODES", "classify", "describe", "open_client"]
