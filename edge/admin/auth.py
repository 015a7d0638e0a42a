"""Who may see and do what: password check, login rate limit, sessions, CSRF, roles.

Sessions are Flask's signed cookies holding the role, a CSRF token and a
fingerprint of the password that was used: changing a password logs out every
session opened with the old one. The signing key is shared by all gunicorn
workers through a 0600 file in the data directory.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from collections import deque
from pathlib import Path
from typing import Mapping

from edge.admin.settings import ROLES

RANK = {role: i for i, role in enumerate(ROLES)}


def allowed(role: str | None, needed: str) -> bool:
    return role in RANK and RANK[role] >= RANK[needed]


def fingerprint(password: str) -> str:
    """Short non-reversible tag of a password (goes into the signed session; never the password)."""
    return hashlib.sha256(b"edge-admin-session\0" + password.encode()).hexdigest()[:16]


def check_password(creds: Mapping[str, str], role: str, given: str) -> bool:
    expected = creds.get(role)
    # Compare digests so the comparison time says nothing about the length of the secret.
    a = hashlib.sha256((given or "").encode()).digest()
    b = hashlib.sha256((expected or "\0unset").encode()).digest()
    return bool(expected) and hmac.compare_digest(a, b)


def role_for(creds: Mapping[str, str], given: str) -> str | None:
    """The role whose password this is (roles have distinct passwords), checking every role."""
    found = None
    for role in ROLES:
        if check_password(creds, role, given):
            found = role
    return found


class LoginLimiter:
    """Failed logins per client address in a sliding window (per worker process: memory only)."""

    def __init__(self, attempts: int, window_s: float, clock=time.monotonic):
        self.attempts = attempts
        self.window = window_s
        self.clock = clock
        self._fails: dict[str, deque] = {}
        self._lock = threading.Lock()

    def _trim(self, q: deque, now: float) -> None:
        while q and q[0] <= now - self.window:
            q.popleft()

    def retry_after(self, client: str) -> float:
        """0 when a login attempt is allowed now, else seconds to wait."""
        now = self.clock()
        with self._lock:
            q = self._fails.get(client)
            if not q:
                return 0.0
            self._trim(q, now)
            if len(q) < self.attempts:
                return 0.0
            return max(1.0, q[0] + self.window - now)

    def failed(self, client: str) -> None:
        now = self.clock()
        with self._lock:
            if len(self._fails) > 10_000:  # bound memory under a spray of addresses
                self._fails.clear()
            q = self._fails.setdefault(client, deque())
            self._trim(q, now)
            q.append(now)

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._fails.pop(client, None)


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_ok(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))


def session_key(directory: Path, creds: Mapping[str, str] | None = None) -> bytes:
    """The cookie signing key, created once (0600) and shared by every worker.

    When the data directory is read-only (an admin container mounting the spool
    volume read-only), the key is derived from the passwords instead: still shared
    by every worker, and still only known to who knows an admin password.
    """
    path = directory / "admin-session.key"
    try:
        return bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError):  # no key yet (or a torn one): create it below
        pass
    try:
        return _create_key(directory, path)
    except OSError:
        material = "\0".join(f"{r}={p}" for r, p in sorted((creds or {}).items()))
        return hashlib.sha256(b"edge-admin-session-key\0" + material.encode()).digest()


def _create_key(directory: Path, path: Path) -> bytes:
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".admin-session.key.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, secrets.token_hex(32).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        # link() fails when another worker won the race; then everyone uses the winner's key.
        os.link(tmp, path)
    except FileExistsError:  # another worker won the race: its key is read below
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return bytes.fromhex(path.read_text().strip())
