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


def tables_from_authorization_details(raw: str | None) -> tuple[str, ...]:
    """Tables the request asks to write (MODIFY on a TABLE); no details at all means every table."""
    if not raw:
        return ("*",)
    try:
        details = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"authorization_details is not JSON: {exc}") from None
    if not isinstance(details, list):
        raise ValueError("authorization_details must be a JSON array")
    tables = []
    for d in details:
        if not isinstance(d, dict):
            continue
        if str(d.get("object_type", "")).upper() == "TABLE" and "MODIFY" in [str(p).upper() for p in d.get("privileges", [])]:
            path = d.get("object_full_path")
            if isinstance(path, str):
                tables.append(path)
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
