"""The Flask app factory: configuration, authentication, security headers.

Routes live in ``views.py`` and who-is-asking in ``access.py``; everything the page shows is computed by
``model.py`` from one short read of the spool (``reading.py``).
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask, Response, request

from edge import __version__
from edge.admin import auth
from edge.admin.access import AdminState, csrf_token, has_role
from edge.admin.fmt import FILTERS
from edge.admin.settings import AdminConfig, credentials, metrics_token
from edge.admin.views import bp
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

    app.register_blueprint(bp)
    return app
