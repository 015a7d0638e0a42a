"""Who is asking: the per-worker state, the caller's role (session or HTTP Basic), CSRF, probe tokens.

Shared by the app factory (``app.py``) and the routes (``views.py``), so neither imports the other.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import abort, current_app, g, redirect, request, session, url_for

from edge.admin import auth
from edge.admin.settings import AdminConfig


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


def _basic_role() -> str | None:
    """HTTP Basic for scripts: user is the role name, password that role's password."""
    header = request.headers.get("Authorization", "")
    if not header.startswith("Basic "):
        return None
    try:
        user, _, pw = base64.b64decode(header[6:], validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    s = st()
    client = request.remote_addr or "?"
    if s.limiter.retry_after(client):
        abort(429)
    if user in s.creds and auth.check_password(s.creds, user, pw):
        s.limiter.succeeded(client)
        return user
    s.limiter.failed(client)
    return None


def current_role() -> str | None:
    if "role" in g:
        return g.role
    role = None
    s = st()
    sess_role = session.get("role")
    # Absolute lifetime: the page's auto-refresh would otherwise keep a session alive forever.
    fresh = time.time() - float(session.get("login_ts") or 0) < float(s.admin.session_lifetime)
    if sess_role in s.creds and fresh and session.get("fp") == auth.fingerprint(s.creds[sess_role]):
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
