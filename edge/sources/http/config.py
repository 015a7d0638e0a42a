"""YAML options of an ``http`` (Ignition gateway) source; see README.md "Ignition gateways"."""

from __future__ import annotations

from dataclasses import dataclass

from edge.config import SourceBase
from edge.configtypes import ByteSize, ConfigError, Duration, Secret, check_listen


@dataclass
class Config(SourceBase):
    listen: str = "0.0.0.0:8088"
    base_path: str = ""  # e.g. "/data/zerobus-edge" if a reverse proxy forwards a sub-path
    token: Secret = Secret("")  # required: Authorization: Bearer <token>, or X-Edge-Token: <token>
    tls_cert: str | None = None  # PEM certificate chain; with tls_key, serve HTTPS
    tls_key: str | None = None
    max_body_bytes: ByteSize = ByteSize(8 * 1024**2)
    max_batch_events: int = 10_000
    commit_timeout: Duration = Duration(8)  # below the scripts' 10 s timeout: answer 503 rather than time out
    retry_after: int = 5  # seconds, in the 503 answer
    # Bounds on what a client can hold (see edge/sources/http/server.py).
    max_connections: int = 64  # over it the longest-idle connection is closed, or the new one gets 503
    idle_timeout: Duration = Duration(60)  # keep-alive: wait this long for the next request
    header_timeout: Duration = Duration(10)  # the whole request head (and a TLS handshake) within this
    body_timeout: Duration = Duration(30)  # the whole body within this, else 408 and nothing committed
    max_json_depth: int = 32  # an event value nested deeper is quarantined
    auth_max_failures: int = 10  # wrong/missing tokens from one address within auth_lockout ...
    auth_lockout: Duration = Duration(60)  # ... block it (429) for this long

    def validate(self, path: str) -> None:
        super().validate(path)
        if len(self.token) < 16 and not self.token.withheld:
            raise ConfigError(f"{path}.token", "is required and must be at least 16 characters (use ${VAR} from a secret)")
        check_listen(self.listen, f"{path}.listen")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError(f"{path}.tls_cert", "tls_cert and tls_key go together")
        if self.base_path and (not self.base_path.startswith("/") or self.base_path.endswith("/")):
            raise ConfigError(f"{path}.base_path", "must start with '/' and not end with '/'")
        if not 1 <= self.max_batch_events <= 100_000:
            raise ConfigError(f"{path}.max_batch_events", "must be between 1 and 100000")
        for key, lo, hi in (("max_connections", 1, 10_000), ("max_json_depth", 1, 256), ("auth_max_failures", 1, 10_000)):
            if not lo <= getattr(self, key) <= hi:
                raise ConfigError(f"{path}.{key}", f"must be between {lo} and {hi}")
