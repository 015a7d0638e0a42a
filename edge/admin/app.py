"""The Flask app factory: configuration, authentication, security headers.

Routes live in ``views.py``; everything the page shows is computed by
``model.py`` from one short read of the spool (``reading.py``).
"""

from __future__ import annotations

import base64
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask, Response, abort, g, redirect, request, session, url_for

from edge import __version__
from edge.admin import auth, commands
from edge.admin.fmt import FILTERS
from edge.admin.settings import AdminConfig, credentials, metrics_token
from edge.configtypes import ConfigError

log = logging.getLogger("edge.admin")

CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; connect-src 'self'")


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


def _load_config(config: Any, env: dict[str, str]):
    from edge.config import load

    if config is None:
        path = env.get("EDGE_CONFIG")
        if not path:
            raise ConfigError("", "EDGE_CONFIG is not set: point it at the appliance config file")
        return load(path, env, section="admin")
    if isinstance(config, (str, os.PathLike)):
        return load(config, env, section="admin")
    return config


def create_app(config: Any = None, *, env: dict[str, str] | None = None) -> Flask:
    """Build the app from a Config, a config path, or ``$EDGE_CONFIG``; refuses to start without credentials."""
    env = dict(os.environ) if env is None else env
    cfg = _load_config(config, env)
    admin = cfg.admin if cfg.admin is not None else AdminConfig()
    creds = credentials(admin, env)
    token = metrics_token(admin, env)
    data_dir = Path(cfg.data_dir)
    state = AdminState(
        cfg=cfg, admin=admin, creds=dict(creds), token=str(token),
        limiter=auth.LoginLimiter(admin.login_attempts, float(admin.login_window)),
        commands_dir=commands.directory(cfg),
        version=__version__,
    )
    app = Flask(__name__, static_folder="static", template_folder="templates")
    app.config.update(
        SECRET_KEY=auth.session_key(data_dir, creds),
        SESSION_COOKIE_NAME="edge_admin",
        SESSION_COOKIE_SECURE=bool(admin.secure_cookies),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=float(admin.session_lifetime)),
        MAX_CONTENT_LENGTH=64 * 1024,
        JSON_SORT_KEYS=False,
    )
    app.extensions["edge_admin"] = state
    app.jinja_env.filters.update(FILTERS)
    app.jinja_env.globals.update(csrf_token=csrf_token, has_role=has_role)

    @app.after_request
    def _headers(resp: Response) -> Response:
        h = resp.headers
        h["Content-Security-Policy"] = CSP
        h["X-Frame-Options"] = "DENY"
        h["X-Content-Type-Options"] = "nosniff"
        h["Referrer-Policy"] = "no-referrer"
        h["Permissions-Policy"] = "camera=(), microphone=(), geolocation=(), payment=()"
        h["Cross-Origin-Opener-Policy"] = "same-origin"
        h["Cross-Origin-Resource-Policy"] = "same-origin"
        if request.endpoint != "static":
            h["Cache-Control"] = "no-store"
        if request.is_secure:
            h["Strict-Transport-Security"] = "max-age=31536000"
        return resp

    from edge.admin.views import bp

    app.register_blueprint(bp)
    return app


def st() -> AdminState:
    from flask import current_app

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
