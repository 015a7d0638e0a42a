"""The Flask app factory: configuration, authentication, security headers.

Routes live in ``views.py`` and who-is-asking in ``access.py``; everything the page shows is computed by
``model.py`` from one short read of the spool (``reading.py``).
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask, Response, request

from edge import __version__
from edge.admin import auth
from edge.admin.access import AdminState, csrf_token, has_role
from edge.admin.fmt import FILTERS
from edge.admin.sessions import StoreSessionInterface
from edge.admin.settings import AdminConfig, credentials, metrics_token
from edge.admin.store import AdminStore
from edge.admin.views import bp
from edge.admin import checkviews  # noqa: F401 - adds the source checks routes to bp
from edge.configtypes import ConfigError
from edge.control import commands

log = logging.getLogger("edge.admin")

CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; connect-src 'self'")


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


def state_dir(cfg: Any, admin: AdminConfig, env: dict[str, str]) -> Path:
    """Where sessions and login failures live: admin.state_dir, $EDGE_ADMIN_STATE_DIR, or <data_dir>/admin-state.

    When the default cannot be written (an admin container that mounts the data volume read-only
    and names no state dir), a private directory under the system temp dir is used: still shared
    by every worker, lost with the container (everyone signs in again).
    """
    if admin.state_dir:
        return Path(admin.state_dir)
    if env.get("EDGE_ADMIN_STATE_DIR"):
        return Path(env["EDGE_ADMIN_STATE_DIR"])
    default = Path(cfg.data_dir) / "admin-state"
    try:
        default.mkdir(parents=True, exist_ok=True, mode=0o700)
        if os.access(default, os.W_OK):
            return default
    except OSError:
        log.debug("cannot create %s", default)  # the fallback below says what happens instead
    fallback = Path(tempfile.gettempdir()) / f"edge-admin-{os.getuid()}"
    log.warning("admin state: %s is not writable; sessions and login limits kept in %s (set admin.state_dir "
                "to keep them across restarts)", default, fallback)
    return fallback


def _setup_logging(cfg: Any) -> None:
    """Our lines (the login audit included) on stderr, which gunicorn's error log shares.

    ``edge admin`` configures logging and then execs gunicorn, which sets up only its own
    loggers: without a handler here the audit lines (INFO) went nowhere. A process that
    already has handlers (a test, an embedding server) keeps its own setup.
    """
    if not logging.getLogger().handlers:
        level = getattr(getattr(cfg, "logging", None), "level", "info")
        logging.basicConfig(level=getattr(logging, str(level).upper(), logging.INFO), stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s %(message)s")


def create_app(config: Any = None, *, env: dict[str, str] | None = None) -> Flask:
    """Build the app from a Config, a config path, or ``$EDGE_CONFIG``; refuses to start without credentials."""
    env = dict(os.environ) if env is None else env
    cfg = _load_config(config, env)
    _setup_logging(cfg)
    admin = cfg.admin if cfg.admin is not None else AdminConfig()
    creds = credentials(admin, env)
    token = metrics_token(admin, env)
    store = AdminStore(state_dir(cfg, admin, env))
    tags = {role: store.tag(role, str(pw)) for role, pw in creds.items()}
    # A password changed since the last start ends every session opened with the old one.
    store.prune(tags, float(admin.session_lifetime))
    state = AdminState(
        cfg=cfg, admin=admin, creds=dict(creds), token=str(token),
        limiter=auth.LoginLimiter(store, admin.login_attempts, float(admin.login_window)),
        commands_dir=commands.directory(cfg),
        version=__version__,
    )
    app = Flask(__name__, static_folder="static", template_folder="templates")
    app.session_interface = StoreSessionInterface(store, float(admin.session_lifetime), tags.get)
    tls = bool(admin.tls_cert)
    app.config.update(
        SECRET_KEY=secrets.token_bytes(32),  # nothing is signed with it: sessions are server-side
        SESSION_COOKIE_NAME="edge_admin",
        SESSION_COOKIE_SECURE=bool(admin.secure_cookies) or tls,
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
        if request.is_secure or tls:
            h["Strict-Transport-Security"] = "max-age=31536000"
        return resp

    app.register_blueprint(bp)
    return app
