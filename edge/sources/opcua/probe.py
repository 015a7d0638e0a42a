"""``edge doctor --sources`` for an OPC-UA source: reach, endpoint, trust, login, read one node.

- ``reach``: a TCP connection to the endpoint's host and port.
- ``endpoint``: GetEndpoints; the server offers one with the configured policy and mode
  (else the hint names what it offers and what to set).
- ``trust``: Sign / SignAndEncrypt only: the server certificate from that endpoint passes the
  collector's validator (trust list, validity, SAN URI = ApplicationUri); a refused one is
  filed under ``rejected/`` like the collector does, and the hint says which file to move.
- ``login``: a session opened exactly as the collector opens it (our certificate, the user or
  anonymous); a refusal says whether the user, our certificate or the security settings failed.
- ``read``: the value of the first configured node (or browse path, or a variable below the
  first folder), with its StatusCode.
The words for endpoints and failures come from ``diagnose.py``, shared with the collector.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

from asyncua import Client, ua
from asyncua.common.utils import ServiceError
from asyncua.crypto import security_policies
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from edge.control.probing import Check, Checks, reach
from edge.sources.opcua import diagnose
from edge.sources.opcua.config import Config
from edge.sources.opcua.connect import AUTH_CODES, open_client, own_cert_path
from edge.sources.opcua.resolve import resolve_group
from edge.sources.opcua.security import Pki

NONE_URI = "http://opcfoundation.org/UA/SecurityPolicy#None"
CHECKS = ("reach", "endpoint", "trust", "login", "read")


def wanted(cfg: Config) -> tuple[str, ua.MessageSecurityMode]:
    """(policy URI, mode) the collector asks for."""
    if cfg.security.mode == "None":
        return NONE_URI, ua.MessageSecurityMode.None_
    return security_policies.SecurityPolicyBasic256Sha256.URI, getattr(ua.MessageSecurityMode, cfg.security.mode)


def mismatch_hint(cfg: Config, endpoints: list) -> str:
    """What to set when the server offers no endpoint with the configured policy and mode."""
    ours = security_policies.SecurityPolicyBasic256Sha256.URI
    modes = {diagnose.mode_name(ep.SecurityMode) for ep in endpoints if ep.SecurityPolicyUri == ours}
    offered = "; ".join(diagnose.endpoint_summary(endpoints)) or "nothing"
    for mode in ("SignAndEncrypt", "Sign"):
        if mode in modes:
            extra = " and trust the server certificate" if cfg.security.mode == "None" else ""
            return f"server offers {offered}; set security.mode: {mode}{extra}"
    if any(ep.SecurityPolicyUri == NONE_URI for ep in endpoints):
        return (f"server offers only {offered}: enable Basic256Sha256 on the server, or set security.mode: None "
                "(unsigned, unencrypted)")
    return f"server offers only {offered}; this appliance speaks Basic256Sha256 (or None): enable one on the server"


def login_hint(code: str, cfg: Config, pki: Pki, tokens: list[str]) -> str:
    if code in AUTH_CODES:
        if not cfg.username:
            return (f"the server refuses anonymous sessions (it accepts {', '.join(tokens) or 'no token type'}): "
                    f"set {cfg.name}.username / password")
        return f"check {cfg.name}.username / password (the secret behind ${{VAR}}) with the server's user list"
    if code.startswith("BadCertificate") or code in ("BadSecurityChecksFailed", "BadNoValidCertificates"):
        return (f"the server does not trust our certificate {pki.own_cert}: add it to the server's trusted "
                "certificates (many servers file it under rejected/ first)")
    if code in ("BadSecurityPolicyRejected", "BadSecurityModeRejected"):
        return "the server refused the security settings: see the endpoint check"
    if code == "BadTooManySessions":
        return "the server has no session left: close idle clients or raise its session limit"
    return "see the detail; the server's own log says more"


def read_hint(code: str, cfg: Config, what: str) -> str:
    if code in ("BadNodeIdUnknown", "BadNodeIdInvalid", "BadBrowseNameInvalid", "BadNoMatch"):
        return f"{what} does not exist on this server: check {cfg.name}.groups[0] (browse the server to find it)"
    if code in ("BadUserAccessDenied", "BadNotReadable"):
        return f"the server does not let this user read {what}: grant read access on the server"
    if code == "BadAttributeIdInvalid":
        return f"{what} is not a variable (a folder or object has no value): name a variable below it"
    return f"the server answered {code or 'an error'} for {what}: check the node and the device behind it"


def first_only(cfg: Config):
    """The first group cut down to its first node, browse path or folder: one read, not a whole browse."""
    g = cfg.groups[0]
    if g.nodes:
        return dataclasses.replace(g, nodes=g.nodes[:1], browse_paths=[], folders=[]), g.nodes[0]
    if g.browse_paths:
        return dataclasses.replace(g, browse_paths=g.browse_paths[:1], folders=[]), g.browse_paths[0]
    folder = dataclasses.replace(g.folders[0], max_depth=min(3, g.folders[0].max_depth))
    return dataclasses.replace(g, folders=[folder]), f"folder {folder.root}"


async def check_endpoint(checks: Checks, cfg: Config, timeout: float):
    """The server's endpoint matching the configuration, or None (the check failed)."""
    policy, mode = wanted(cfg)
    try:
        endpoints = await asyncio.wait_for(Client(cfg.endpoint, timeout=timeout).connect_and_get_server_endpoints(),
                                           timeout)
    except Exception as exc:  # noqa: BLE001 - anything here means "not an OPC-UA server we can talk to"
        checks.fail("endpoint", f"GetEndpoints failed: {diagnose.explain_connect_error(exc)}",
                    f"the port answers, but not as an OPC-UA server: check {cfg.name}.endpoint (host, port, path)")
        return None
    match = [ep for ep in endpoints if ep.SecurityPolicyUri == policy and ep.SecurityMode == mode]
    if not match:
        checks.fail("endpoint", diagnose.explain_mismatch(policy, mode, endpoints), mismatch_hint(cfg, endpoints))
        return None
    ep = match[0]
    checks.passed("endpoint", f"{diagnose.policy_name(policy)} / {cfg.security.mode} offered by "
                  f"{ep.Server.ApplicationUri} (users: {', '.join(diagnose.token_names(ep.UserIdentityTokens)) or 'none'})")
    secure = [e for e in endpoints if e.SecurityMode != ua.MessageSecurityMode.None_]
    if cfg.security.mode == "None" and secure:
        checks.warn("security", "security.mode None: the session is neither signed nor encrypted",
                    mismatch_hint(cfg, secure))
    return ep


def trust_failure(cert: x509.Certificate, app_uri: str, filed: bool, rejected: Path, trusted: Path) -> tuple[str, str]:
    """(what is wrong, what fixes it) for a refused server certificate; ``filed``: it went to rejected/."""
    whats, fixes = [], []
    for problem in diagnose.certificate_problems(cert, app_uri, trusted=True):
        what, _, fix = problem.rpartition(": ") if ": " in problem else (problem, "", "")
        whats.append(what)
        fixes.append(fix or "renew the server certificate (or check this host's clock)")
    if filed:
        whats.append("it is not in the trust list")
        fixes.insert(0, f"move {rejected} to {trusted}/ (after checking its thumbprint with the server's owner)")
    return ("; ".join(whats) or "refused by the validator (revoked, or a CA in the chain is not trusted)",
            "; ".join(dict.fromkeys(fixes)) or f"check the server certificate and the CAs / CRLs in {trusted}")


def _thumbprint(cert: x509.Certificate) -> str:
    return hashlib.sha1(cert.public_bytes(Encoding.DER)).hexdigest()  # noqa: S324 - the rejected file's name, as security.py


async def check_trust(checks: Checks, cfg: Config, pki: Pki, app_uri: str, ep) -> bool:
    if cfg.security.mode == "None":
        return checks.passed("trust", "no certificates in use (security.mode: None)")
    sec = cfg.security
    try:
        # Sources probed at once share one pki dir: ensure_own_certificate locks it (threads and processes).
        await asyncio.to_thread(pki.ensure_own_certificate, app_uri, sec.certificate_host, sec.certificate_days)
        own = pki.own_certificate()
    except (OSError, ValueError) as exc:
        return checks.fail("trust", f"our certificate {pki.own_cert}: {exc}",
                           f"check that {pki.root} is writable by the appliance's user")
    if own.not_valid_after_utc < datetime.now(timezone.utc):
        return checks.fail("trust", f"our certificate {pki.own_cert} expired on {own.not_valid_after_utc:%Y-%m-%d}",
                           "delete own/cert.der and own/key.pem to generate a new one, then trust it on the server")
    der = bytes(ep.ServerCertificate or b"")
    if not der:
        return checks.fail("trust", "the endpoint carries no server certificate", "configure one on the server")
    cert = x509.load_der_x509_certificate(der[:int.from_bytes(der[2:4], "big") + 4])  # the leaf of a chain
    validate = await pki.validator()
    try:
        await validate(cert, ep.Server)
    except ServiceError as exc:
        rejected = pki.rejected / f"{_thumbprint(cert)}.der"
        # The validator files a certificate under rejected/ only when trust is what is missing.
        filed = str(rejected) in (pki.last_rejected or "")
        detail, hint = trust_failure(cert, ep.Server.ApplicationUri, filed, rejected, pki.trusted)
        return checks.fail("trust", f"server certificate {cert.subject.rfc4514_string()} refused "
                           f"({ua.StatusCode(exc.code).name}): {detail}", hint)
    return checks.passed("trust", f"server certificate {cert.subject.rfc4514_string()} trusted, valid until "
                         f"{cert.not_valid_after_utc:%Y-%m-%d}, SAN URI {ep.Server.ApplicationUri}")


async def check_login_and_read(checks: Checks, cfg: Config, pki: Pki, app_uri: str, ep, timeout: float,
                               appliance_id: str) -> None:
    ctx = SimpleNamespace(appliance_id=appliance_id, status=SimpleNamespace(update=lambda **_: None))
    user = f"user {cfg.username!r}" if cfg.username else "anonymous"

    async def on_lost(_exc: Exception) -> None:  # the probe's session ends with the probe
        return None

    try:
        client = await asyncio.wait_for(open_client(cfg, pki, app_uri, ctx, on_lost), timeout * 2)
    except Exception as exc:  # noqa: BLE001 - every refusal is the check's answer
        code = diagnose.status_name(exc)
        policy, mode = wanted(cfg)
        why = diagnose.explain_connect_error(exc, policy, mode, own_cert=own_cert_path(cfg, pki))
        checks.fail("login", f"{user}: {why}",
                    login_hint(code, cfg, pki, diagnose.token_names(ep.UserIdentityTokens)))
        checks.skip(("read",), "no session")
        return
    try:
        checks.passed("login", f"session opened as {user} ({diagnose.policy_name(wanted(cfg)[0])} / {cfg.security.mode})")
        await asyncio.wait_for(read_one(checks, cfg, client), timeout * 2)
    except (TimeoutError, asyncio.TimeoutError):
        checks.fail("read", f"no answer within {timeout * 2:g}s", "the server is overloaded or the browse is too large")
    finally:
        try:
            await asyncio.wait_for(client.disconnect(), timeout)
        except Exception:  # noqa: BLE001 - the session times out on the server (session_timeout) if not closed here
            pass


async def read_one(checks: Checks, cfg: Config, client: Client) -> None:
    group, what = first_only(cfg)
    try:
        resolved = await resolve_group(client, group)
    except Exception as exc:  # noqa: BLE001 - a browse refusal is the check's answer
        checks.fail("read", f"{what}: {diagnose.describe(exc)}", read_hint(diagnose.status_name(exc), cfg, what))
        return
    if not resolved.targets:
        why = "; ".join(f"{w}: {r}" for w, r in resolved.errors) or "nothing found"
        checks.fail("read", why, read_hint("BadNoMatch", cfg, what))
        return
    target = resolved.targets[0]
    try:
        dv = await client.get_node(target.nodeid).read_data_value(raise_on_bad_status=False)
    except Exception as exc:  # noqa: BLE001 - a read refusal is the check's answer
        checks.fail("read", f"{target.point}: {diagnose.describe(exc)}", read_hint(diagnose.status_name(exc), cfg, what))
        return
    status = dv.StatusCode or ua.StatusCode(ua.StatusCodes.Good)
    value = repr(dv.Value.Value if dv.Value is not None else None)
    value = value if len(value) <= 60 else value[:57] + "..."
    detail = f"{target.point} = {value} ({status.name}, source time {dv.SourceTimestamp or 'none'})"
    if status.is_good():
        checks.passed("read", detail)
    elif status.is_uncertain():
        checks.warn("read", detail, "the server reports this value as uncertain: check the device behind it")
    else:
        checks.fail("read", detail, read_hint(status.name, cfg, what))


async def probe(cfg: Config, timeout: float, *, appliance_id: str = "edge", data_dir: str = ".") -> list[Check]:
    checks = Checks(cfg.name)
    u = urlsplit(cfg.endpoint)
    if not await reach(checks, u.hostname or "", u.port or 4840, timeout, f"{cfg.name}.endpoint"):
        checks.skip(CHECKS[1:], "the server is not reachable")
        return checks.rows
    ep = await check_endpoint(checks, cfg, timeout)
    if ep is None:
        checks.skip(CHECKS[2:], "no endpoint with the configured security")
        return checks.rows
    app_uri = cfg.security.application_uri or f"urn:zerobus-edge:{appliance_id}"
    pki_dir = Path(cfg.security.pki_dir)
    pki = Pki(pki_dir if pki_dir.is_absolute() else Path(data_dir) / pki_dir)
    if not await check_trust(checks, cfg, pki, app_uri, ep):
        checks.skip(CHECKS[3:], "the server certificate is not trusted")
        return checks.rows
    await check_login_and_read(checks, cfg, pki, app_uri, ep, timeout, appliance_id)
    return checks.rows


__all__ = ["login_hint", "mismatch_hint", "probe", "read_hint"]
