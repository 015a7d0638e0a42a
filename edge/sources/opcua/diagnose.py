"""What went wrong opening an OPC-UA session, in words an operator can act on; pure.

- ``endpoint_summary(endpoints)``: one line per endpoint a server offers
  (``Basic256Sha256 / Sign, users: Anonymous, UserName``).
- ``explain_connect_error(exc, policy=..., mode=..., own_cert=...)``: the one-line detail of a failed
  connect; a security mismatch names the requested policy and mode by name and lists what the server
  offers; a refusal of our certificate (BadSecurityChecksFailed) names the file to trust on the server.
- ``explain_certificate(cert, application_uri, trusted=...)``: why a server certificate is refused
  (no SAN URI, SAN URI not the ApplicationUri, expired, not yet valid, untrusted).
- ``is_routine(exc)``: a disconnect, refusal, timeout or certificate refusal, not a bug.

Used by the collector (``connect.py``, ``security.py``) and by ``edge doctor --sources``.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timezone
from typing import Any, Iterable

from asyncua import ua
from asyncua.common.utils import ServiceError
from cryptography import x509

_NO_MATCH = re.compile(r"No matching endpoints: (?:MessageSecurityMode\.)?(\w+), (\S+)")
# Status codes that describe the network, the server's state or a refusal: no traceback needed.
ROUTINE_CODES = ("BadCertificate", "BadSecurity", "BadSecureChannel", "BadSession", "BadUser", "BadIdentity",
                  "BadTimeout", "BadConnection", "BadServerHalted", "BadServerNotConnected", "BadCommunicationError",
                  "BadNotConnected", "BadShutdown", "BadRequestTimeout", "BadTcp", "BadNoSubscription",
                  "BadTooManySessions", "BadEndpointUrlInvalid")


class NoMatchingEndpoint(Exception):
    """The server offers no endpoint with the requested security policy and mode."""

    def __init__(self, policy: str, mode: str, endpoints: list[Any] | None):
        self.policy, self.mode, self.endpoints = policy, mode, endpoints
        super().__init__(explain_mismatch(policy, mode, endpoints))


def policy_name(uri: str | None) -> str:
    """``http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256`` -> ``Basic256Sha256``."""
    if not uri:
        return "None"
    return uri.rsplit("#", 1)[-1] or uri


def mode_name(mode: Any) -> str:
    """A MessageSecurityMode (enum, number or name) -> ``None`` / ``Sign`` / ``SignAndEncrypt``."""
    try:
        if isinstance(mode, str) and not mode.isdigit():
            mode = ua.MessageSecurityMode[mode if mode != "None" else "None_"]
        name = ua.MessageSecurityMode(int(mode)).name
    except (KeyError, ValueError, TypeError):
        return str(mode)
    return name.rstrip("_")


def token_names(tokens: Iterable[Any]) -> list[str]:
    out: list[str] = []
    for t in tokens or ():
        try:
            name = ua.UserTokenType(int(t.TokenType)).name
        except (ValueError, TypeError):
            name = str(t.TokenType)
        if name not in out:
            out.append(name)
    return out


def endpoint_summary(endpoints: Iterable[Any]) -> list[str]:
    """One line per endpoint: ``<policy> / <mode>, users: <token types>`` (plus the URL when it is
    not opc.tcp, which the client cannot use)."""
    lines = []
    for ep in endpoints or ():
        users = ", ".join(token_names(ep.UserIdentityTokens)) or "none"
        line = f"{policy_name(ep.SecurityPolicyUri)} / {mode_name(ep.SecurityMode)}, users: {users}"
        if ep.EndpointUrl and not str(ep.EndpointUrl).startswith("opc.tcp://"):
            line += f" ({ep.EndpointUrl})"
        if line not in lines:
            lines.append(line)
    return lines


def explain_mismatch(policy: str, mode: str, endpoints: list[Any] | None) -> str:
    want = f"{policy_name(policy)} / {mode_name(mode)}"
    if endpoints is None:
        return f"the server offers no endpoint with {want} (its endpoint list could not be read)"
    offered = "; ".join(endpoint_summary(endpoints)) or "nothing"
    return f"the server offers no endpoint with {want}; it offers: {offered}"


def is_mismatch(exc: BaseException) -> bool:
    """asyncua's own "No matching endpoints" (it names the mode by number and the policy by URI)."""
    return isinstance(exc, NoMatchingEndpoint) or (isinstance(exc, ua.UaError) and bool(_NO_MATCH.search(str(exc))))


def explain_connect_error(exc: BaseException, policy: str | None = None, mode: str | None = None,
                          endpoints: list[Any] | None = None, own_cert: str | None = None) -> str:
    """One line for a failed connect. ``policy``/``mode``: what was requested (names or asyncua
    values); ``endpoints``: the server's endpoints when known (a mismatch lists them);
    ``own_cert``: the path of our certificate when one was presented (a server that refuses it,
    as open62541 does with BadSecurityChecksFailed, is told to trust that file)."""
    if isinstance(exc, NoMatchingEndpoint):
        return str(exc)
    m = _NO_MATCH.search(str(exc)) if isinstance(exc, ua.UaError) else None
    if m is not None:
        return explain_mismatch(m.group(2), m.group(1), endpoints)
    code = status_name(exc)
    if code == "BadSecurityChecksFailed" and own_cert:
        return (f"the server refused our client certificate (BadSecurityChecksFailed): trust {own_cert} "
                "on the server (copy it into the server's trusted certificates)")
    if code in ("BadSecurityPolicyRejected", "BadSecurityModeRejected") and policy is not None and mode is not None:
        return f"{describe(exc)}: {explain_mismatch(policy, mode, endpoints)}"
    return describe(exc)


def status_name(exc: BaseException) -> str:
    """The StatusCode name of an asyncua error, else ''."""
    code = getattr(exc, "code", None)
    if isinstance(exc, (ua.UaStatusCodeError, ServiceError)) and code is not None:
        return ua.StatusCode(code).name
    return ""


def describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, (ua.UaStatusCodeError, ServiceError)):
        return f"{type(exc).__name__} ({status_name(exc)}): {exc}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text


def san_uris(cert: x509.Certificate) -> list[str] | None:
    """The URIs in the certificate's subjectAltName; None when it has no subjectAltName at all."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    return list(san.value.get_values_for_type(x509.UniformResourceIdentifier))


def certificate_problems(cert: x509.Certificate, application_uri: str | None, *, trusted: bool,
                         now: datetime | None = None) -> list[str]:
    """Every reason an OPC-UA client refuses this server certificate, in words (empty: none found)."""
    now = now or datetime.now(timezone.utc)
    out = []
    if cert.not_valid_after_utc < now:
        out.append(f"it expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    if cert.not_valid_before_utc > now:
        out.append(f"it is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC (check both clocks)")
    uris = san_uris(cert)
    if not uris:
        where = "it has no subjectAltName" if uris is None else "its subjectAltName has no URI"
        out.append(f"{where}; OPC-UA requires the server's ApplicationUri {application_uri!r} there as a URI: "
                   "reissue the server certificate with it")
    elif application_uri not in uris:
        out.append(f"its subjectAltName URI {', '.join(uris)} does not match the server's ApplicationUri "
                   f"{application_uri!r}: reissue the certificate, or fix the server's ApplicationUri")
    if not trusted:
        out.append("it is not trusted")
    return out


def explain_certificate(cert: x509.Certificate, application_uri: str | None, *, trusted: bool,
                        rejected_file: str | None = None, trusted_dir: str | None = None,
                        now: datetime | None = None) -> str:
    """Why the certificate is refused, with the move-to-trusted hint only when trust is what is
    missing (a certificate already in trusted/ is never told to be moved there)."""
    problems = certificate_problems(cert, application_uri, trusted=trusted, now=now)
    if not problems:
        return "refused by the validator" + (" although it is in the trust list" if trusted else "")
    text = "; ".join(problems)
    if not trusted and rejected_file and trusted_dir:
        text += f": to trust it, move {rejected_file} to {trusted_dir}/"
    elif trusted:
        text += " (it is in the trust list already: trusting it again does not help)"
    return text


def is_routine(exc: BaseException | None) -> bool:
    """A disconnect, refused or timed-out connection, or a refusal by status code: one log line, no traceback."""
    if exc is None:
        return False
    if isinstance(exc, (ConnectionError, TimeoutError, asyncio.TimeoutError, asyncio.CancelledError,
                        asyncio.IncompleteReadError, NoMatchingEndpoint, x509.verification.VerificationError)):
        return True
    if isinstance(exc, OSError) and exc.errno is not None:
        return True
    code = status_name(exc)
    if code:
        return code.startswith(ROUTINE_CODES)
    return is_mismatch(exc)


__all__ = ["ROUTINE_CODES", "NoMatchingEndpoint", "certificate_problems", "describe", "endpoint_summary", "explain_certificate",
           "explain_connect_error", "explain_mismatch", "is_mismatch", "is_routine", "mode_name", "policy_name", "san_uris",
           "status_name", "token_names"]
