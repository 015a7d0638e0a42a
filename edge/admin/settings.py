"""The ``admin:`` section of the appliance config.

Authentication is on unless every credential is missing, in which case the app
refuses to start (``AdminConfigError``): there is no default password. Each
password may come from the YAML (usually ``${EDGE_ADMIN_PASSWORD}``, which the
config loader resolves from the environment or ``EDGE_ADMIN_PASSWORD_FILE``, a
Docker secret) or, when the YAML leaves it empty, straight from that
environment variable / secret file.
"""

from __future__ import annotations

import os
from pathlib import Path

from edge.adminconfig import AdminConfig
from edge.configtypes import ConfigError, Secret

ROLES = ("viewer", "operator", "admin")

# The environment variables read when the YAML leaves a password empty.
PASSWORD_ENV = {"admin": "EDGE_ADMIN_PASSWORD", "operator": "EDGE_OPERATOR_PASSWORD", "viewer": "EDGE_VIEWER_PASSWORD"}
METRICS_TOKEN_ENV = "EDGE_METRICS_TOKEN"
MIN_PASSWORD_LEN = 8


class AdminConfigError(ConfigError):
    """The admin page cannot start with this configuration."""


def _from_env(value: str, var: str, env: dict[str, str]) -> Secret:
    if value:
        return Secret(value)
    if env.get(var):
        return Secret(env[var])
    file_var = env.get(f"{var}_FILE")
    if file_var:
        try:
            return Secret(Path(file_var).read_text().strip())
        except OSError as exc:
            raise AdminConfigError("admin", f"cannot read {var}_FILE ({exc.strerror})") from None
    return Secret("")


def credentials(cfg: AdminConfig, env: dict[str, str] | None = None) -> dict[str, Secret]:
    """Role -> password for every role that can log in; refuses an unusable setup."""
    env = dict(os.environ) if env is None else env
    given = {
        "admin": _from_env(cfg.password, PASSWORD_ENV["admin"], env),
        "operator": _from_env(cfg.operator_password, PASSWORD_ENV["operator"], env),
        "viewer": _from_env(cfg.viewer_password, PASSWORD_ENV["viewer"], env),
    }
    if not given["admin"]:
        raise AdminConfigError(
            "admin.password",
            "no admin password: set EDGE_ADMIN_PASSWORD (or EDGE_ADMIN_PASSWORD_FILE, a Docker secret); "
            "the admin page has no default password",
        )
    for role, pw in given.items():
        if pw and len(pw) < MIN_PASSWORD_LEN:
            raise AdminConfigError(f"admin.{'password' if role == 'admin' else role + '_password'}",
                                   f"must be at least {MIN_PASSWORD_LEN} characters")
    if len({p for p in given.values() if p}) < sum(1 for p in given.values() if p):
        # A shared password would make the role depend on which name was typed, not on who knows what.
        raise AdminConfigError("admin", "each role needs its own password")
    return {role: pw for role, pw in given.items() if pw}


def metrics_token(cfg: AdminConfig, env: dict[str, str] | None = None) -> Secret:
    env = dict(os.environ) if env is None else env
    token = _from_env(cfg.metrics_token, METRICS_TOKEN_ENV, env)
    if cfg.probes == "token" and len(token) < MIN_PASSWORD_LEN:
        raise AdminConfigError("admin.metrics_token",
                               f"probes: token needs a metrics_token (or {METRICS_TOKEN_ENV}) of at least "
                               f"{MIN_PASSWORD_LEN} characters")
    return token
