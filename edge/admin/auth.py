"""Who may see and do what: password check, login rate limit, CSRF, roles.

Sessions are server-side (sessions.py, store.py): the cookie holds a random id only.
Failed logins are counted per client address and per role named, in the admin store
shared by every gunicorn worker (store.py), so another role's success, a worker restart
or a spray of addresses does not reset anyone's count (addresses beyond the store's room
share one count per role: store.OVERFLOW).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Callable, Mapping

from edge.admin.settings import ROLES
from edge.admin.store import AdminStore

RANK = {role: i for i, role in enumerate(ROLES)}


def allowed(role: str | None, needed: str) -> bool:
    return role in RANK and RANK[role] >= RANK[needed]


def check_password(creds: Mapping[str, str], role: str, given: str) -> bool:
    """Whether ``given`` is the password of ``role`` (one role: the one the form or the Basic user names)."""
    expected = creds.get(role)
    # Compare digests so the comparison time says nothing about the length of the secret.
    a = hashlib.sha256((given or "").encode()).digest()
    b = hashlib.sha256((expected or "\0unset").encode()).digest()
    return bool(expected) and hmac.compare_digest(a, b)


class LoginLimiter:
    """Failed logins per (client address, role) in a sliding window, shared by every worker (the admin store)."""

    def __init__(self, store: AdminStore, attempts: int, window_s: float, clock: Callable[[], float] = time.time):
        self.store = store
        self.attempts = attempts
        self.window = window_s
        self.clock = clock

    def retry_after(self, client: str, role: str) -> float:
        """0 when a login attempt for ``role`` from ``client`` is allowed now, else seconds to wait."""
        now = self.clock()
        since = now - self.window
        fails = self.store.failures(self.store.bucket(client, role, since), role, since)
        if len(fails) < self.attempts:
            return 0.0
        return max(1.0, fails[-self.attempts] + self.window - now)

    def failed(self, client: str, role: str) -> None:
        now = self.clock()
        self.store.add_failure(self.store.bucket(client, role, now - self.window), role, now, self.window)

    def succeeded(self, client: str, role: str) -> None:
        self.store.clear_failures(client, role)


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_ok(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))
