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
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edge.configtypes import ConfigError, Duration, Secret, check_listen

ROLES = ("viewer", "operator", "admin")

# The environment variables read when the YAML leaves a password empty.
PASSWORD_ENV = {"admin": "EDGE_ADMIN_PASSWORD", "operator": "EDGE_OPERATOR_PASSWORD", "viewer": "EDGE_VIEWER_PASSWORD"}
METRICS_TOKEN_ENV = "EDGE_METRICS_TOKEN"
MIN_PASSWORD_LEN = 8


class AdminConfigError(ConfigError):
    """The admin page cannot start with this configuration."""


@dataclass
class AdminConfig:
    bind: str = "0.0.0.0:8080"
    # Role admin (user "admin"); operator and viewer logins exist only when their password is set.
    password: Secret = Secret("")
    operator_password: Secret = Secret("")
    viewer_password: Secret = Secret("")
    # Plain-HTTP lab use needs false, or browsers drop the session cookie.
    secure_cookies: bool = True
    session_lifetime: Duration = Duration(8 * 3600)
    # "open": /metrics, /healthz, /readyz answer anyone (management network only);
    # "token": they need "Authorization: Bearer <metrics_token>".
    probes: Literal["open", "token"] = "open"
    metrics_token: Secret = Secret("")
    login_attempts: int = 5  # failed logins per client address ...
    login_window: Duration = Duration(300)  # ... within this many seconds, then 429
    refresh: Duration = Duration(5)  # page auto-refresh; 0 turns it off
    chart_window: Duration = Duration(6 * 3600)
    forwarder_stale_after: Duration = Duration(60)  # /readyz fails when the forwarder state is older
    workers: int = 2
    timeout: Duration = Duration(30)
    # Operator requests (pause/resume, checkpoint, dead-letter retry) land here for the runner.
    commands_dir: str | None = None  # default <data_dir>/admin-commands
    # Sessions and login-failure counts (SQLite, shared by every worker); default <data_dir>/admin-state.
    state_dir: str | None = None
    # TLS on the page's own listener (PEM files, both or neither); HSTS is sent over it.
    tls_cert: str | None = None
    tls_key: str | None = None

    ZERO_OK = ("refresh",)  # 0: no auto-refresh

    def validate(self, path: str) -> None:
        check_listen(self.bind, f"{path}.bind")
        if not 1 <= self.workers <= 16:
            raise ConfigError(f"{path}.workers", "must be between 1 and 16")
        if not 1 <= self.login_attempts <= 1000:
            raise ConfigError(f"{path}.login_attempts", "must be between 1 and 1000")
        if self.refresh and self.refresh < 1:
            raise ConfigError(f"{path}.refresh", "must be 0 (off) or at least 1s")
        if not 60 <= self.chart_window <= 7 * 86400:
            raise ConfigError(f"{path}.chart_window", "must be between 1m and 7d")
        if not 1 <= self.timeout <= 600:
            raise ConfigError(f"{path}.timeout", "must be between 1s and 10m")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError(f"{path}.tls_cert", "tls_cert and tls_key go together: set both or neither")


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
