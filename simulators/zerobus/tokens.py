"""Stateless OAuth tokens: HMAC-signed claims, so they stay valid across emulator restarts.

The SDK caches its token and reuses it during stream recovery; a server that
forgot the tokens it issued would turn a restart into a non-retriable
UNAUTHENTICATED. The signing key lives in the data dir.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from dataclasses import dataclass

PREFIX = "zbemu"


class TokenInvalid(Exception):
    pass


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_key(path: str) -> bytes:
    """The signing key, created (mode 0600) on first use."""
    try:
        with open(path, "rb") as fh:
            key = fh.read()
        if len(key) >= 32:
            return key
    except FileNotFoundError:
        pass
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
        fh.flush()
        os.fsync(fh.fileno())
    return key


@dataclass(frozen=True)
class Claims:
    client_id: str
    tables: tuple[str, ...]  # "*" grants every table
    expires_at: int

    def grants(self, table: str) -> bool:
        return "*" in self.tables or table in self.tables


class TokenRequestError(ValueError):
    """A token request the real endpoint would refuse: OAuth ``error`` code + description (HTTP 400)."""

    def __init__(self, error: str, description: str):
        super().__init__(description)
        self.error, self.description = error, description


RESOURCE = re.compile(r"api://databricks/workspaces/([^/]+)/zerobusDirectWriteApi")


def _grants(details: list) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for d in details:
        if not isinstance(d, dict) or d.get("type") != "unity_catalog_privileges":
            raise TokenRequestError("invalid_authorization_details", "each entry must be {\"type\": \"unity_catalog_privileges\", ...}")
        kind, path, privs = d.get("object_type"), d.get("object_full_path"), d.get("privileges")
        if not isinstance(kind, str) or not isinstance(path, str) or not isinstance(privs, list):
            raise TokenRequestError("invalid_authorization_details", "each entry needs object_type, object_full_path and a privileges list")
        out.setdefault((kind.upper(), path), set()).update(str(p).upper() for p in privs)
    return out


def check_token_form(form: dict[str, str], workspace_id: str | None = None) -> tuple[str, ...]:
    """The tables a ZeroBus token request may write, checked the way the SDK builds it (README.md, OAuth tokens).

    grant_type=client_credentials, scope=all-apis, resource naming the workspace's
    zerobusDirectWriteApi, and authorization_details granting USE CATALOG, USE SCHEMA and
    SELECT+MODIFY down to each table. Anything else raises TokenRequestError.
    """
    if form.get("grant_type") != "client_credentials":
        raise TokenRequestError("unsupported_grant_type", "grant_type must be client_credentials")
    if "all-apis" not in (form.get("scope") or "").split():
        raise TokenRequestError("invalid_scope", "scope must include all-apis")
    m = RESOURCE.fullmatch(form.get("resource") or "")
    if not m:
        raise TokenRequestError("invalid_target", "resource must be api://databricks/workspaces/<workspace id>/zerobusDirectWriteApi")
    if workspace_id is not None and m.group(1) != workspace_id:
        raise TokenRequestError("invalid_target", f"resource names workspace {m.group(1)!r}, this is workspace {workspace_id!r}")
    raw = form.get("authorization_details")
    if not raw:
        raise TokenRequestError("invalid_authorization_details", "authorization_details (Unity Catalog privileges) are required")
    try:
        details = json.loads(raw)
    except ValueError as exc:
        raise TokenRequestError("invalid_authorization_details", f"authorization_details is not JSON: {exc}") from None
    if not isinstance(details, list):
        raise TokenRequestError("invalid_authorization_details", "authorization_details must be a JSON array")
    grants = _grants(details)
    tables = []
    for (kind, path), privs in grants.items():
        if kind != "TABLE" or not {"SELECT", "MODIFY"} <= privs:
            continue
        parts = path.split(".")
        if len(parts) != 3:
            raise TokenRequestError("invalid_authorization_details", f"table {path!r} is not catalog.schema.table")
        if "USE CATALOG" not in grants.get(("CATALOG", parts[0]), set()):
            raise TokenRequestError("invalid_authorization_details", f"USE CATALOG on {parts[0]!r} is missing for {path!r}")
        if "USE SCHEMA" not in grants.get(("SCHEMA", f"{parts[0]}.{parts[1]}"), set()):
            raise TokenRequestError("invalid_authorization_details", f"USE SCHEMA on {parts[0]}.{parts[1]!r} is missing for {path!r}")
        tables.append(path)
    if not tables:
        raise TokenRequestError("invalid_authorization_details", "no table with SELECT and MODIFY in authorization_details")
    return tuple(tables)


class TokenIssuer:
    def __init__(self, key: bytes, ttl_s: int = 3600):
        self.key = key
        self.ttl_s = ttl_s

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self.key, payload.encode("ascii"), hashlib.sha256).digest())

    def issue(self, client_id: str, tables: tuple[str, ...], now: float | None = None) -> tuple[str, int]:
        now = time.time() if now is None else now
        exp = int(now) + self.ttl_s
        payload = _b64(json.dumps({"sub": client_id, "tables": list(tables), "exp": exp}, separators=(",", ":")).encode())
        return f"{PREFIX}.{payload}.{self._sign(payload)}", self.ttl_s

    def verify(self, token: str, now: float | None = None) -> Claims:
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != PREFIX:
            raise TokenInvalid("not a token issued by this emulator")
        if not hmac.compare_digest(self._sign(parts[1]), parts[2]):
            raise TokenInvalid("token signature does not verify (issued by another emulator key?)")
        try:
            claims = json.loads(_unb64(parts[1]))
            result = Claims(str(claims["sub"]), tuple(claims["tables"]), int(claims["exp"]))
        except (ValueError, KeyError, TypeError):
            raise TokenInvalid("token claims are unreadable") from None
        if result.expires_at < (time.time() if now is None else now):
            raise TokenInvalid("token expired")
        return result
