"""The ``admin:`` section's schema: part of the appliance config, so the core's loader
(edge/config.py) can check it without importing the admin page (edge/admin/ depends on
the core, never the reverse). What the page does with it lives in edge/admin/settings.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edge.configtypes import ConfigError, Duration, Secret, check_listen


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
