"""Who is asking: the per-worker state, the caller's role (session or HTTP Basic), CSRF, probe tokens.

Shared by the app factory (``app.py``) and the routes (``views.py``), so neither imports the other.
"""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import abort, current_app, g, redirect, request, session, url_for

from edge.admin import auth
from edge.admin.settings import AdminConfig

AUDIT = logging.getLogger("edge.admin.audit")


@dataclass
class AdminState:
    """Everything a request needs besides the spool, built once per worker."""

    cfg: Any  # edge.config.Config
    admin: AdminConfig
    creds: dict[str, str]
    token: str
    limiter: auth.LoginLimiter
    commands_dir: Path
    version: str
    started: float = field(default_factory=time.time)
    source_points: dict[str, list[tuple[float, float]]] = field(default_factory=dict)


def st() -> AdminState:
    return current_app.extensions["edge_admin"]


# ---------------------------------------------------------------- who is asking


def audit(event: str, role: str, client: str, via: str, detail: str = "") -> None:
    """One line per login event (success, failure, lockout); never the password."""
    AUDIT.info("admin login %s: role=%s client=%s via=%s%s", event, role, client, via, f" {detail}" if detail else "")


def try_login(role: str, password: str, via: str) -> tuple[bool, float]:
    """Check ``password`` against ``role`` only, under the shared limiter: (ok, seconds to wait when locked)."""
    s = st()
    client = request.remote_addr or "?"
    if role not in s.creds:
        role = role if role in auth.RANK else "?"
    wait = s.limiter.retry_after(client, role)
    if wait > 0:
        audit("refused", role, client, via, f"locked out for {int(wait)}s")
        return False, wait
    if auth.check_password(s.creds, role, password):
        s.limiter.succeeded(client, role)
        audit("ok", role, client, via)
        return True, 0.0
    s.limiter.failed(client, role)
    wait = s.limiter.retry_after(client, role)
    audit("failed", role, client, via, f"locked out for {int(wait)}s" if wait > 0 else "")
    return False, 0.0


def _basic_role() -> str | None:
    """HTTP Basic for scripts: user is the role name, password that role's password."""
    header = request.headers.get("Authorization", "")
    if not header.startswith("Basic "):
        return None
    try:
        user, _, pw = base64.b64decode(header[6:], validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    ok, wait = try_login(user, pw, "basic")
    if wait > 0:
        abort(429)
    return user if ok else None


def current_role() -> str | None:
    if "role" in g:
        return g.role
    role = None
    # The session interface has already refused an expired session or one opened with an old password.
    sess_role = session.get("role")
    if sess_role in st().creds:
        role = sess_role
    elif request.path.startswith("/api/"):
        role = _basic_role()
    g.role = role
    g.via_session = role is not None and role == sess_role
    return role


def has_role(needed: str) -> bool:
    return auth.allowed(current_role(), needed)


def require(needed: str):
    """Abort (or send to the login page) unless the caller holds ``needed`` or better."""
    role = current_role()
    if role is None:
        if request.path.startswith("/api/"):
            abort(401)
        abort(redirect(url_for("admin.login", next=request.full_path if request.query_string else request.path)))
    if not auth.allowed(role, needed):
        abort(403)


def csrf_token() -> str:
    tok = session.get("csrf")
    if not tok:
        tok = session["csrf"] = auth.new_csrf_token()
    return tok


def check_csrf() -> None:
    """Cookie sessions must echo the form token; Basic-auth JSON calls must be JSON (no cross-site form can be)."""
    if g.get("via_session"):
        if not auth.csrf_ok(session.get("csrf"), request.form.get("csrf") or request.headers.get("X-CSRF-Token")):
            abort(400, description="missing or wrong CSRF token; reload the page and try again")
    elif not request.is_json:
        abort(415)


def probe_allowed() -> bool:
    s = st()
    if s.admin.probes == "open":
        return True
    header = request.headers.get("Authorization", "")
    return header.startswith("Bearer ") and auth.csrf_ok(s.token, header[7:].strip())
