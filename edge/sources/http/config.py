"""YAML options of an ``http`` (Ignition gateway) source; see README.md "Ignition gateways"."""

from __future__ import annotations

from dataclasses import dataclass

from edge.config import SourceBase
from edge.configtypes import ByteSize, ConfigError, Duration, Secret


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

    def validate(self, path: str) -> None:
        super().validate(path)
        if len(self.token) < 16:
            raise ConfigError(f"{path}.token", "is required and must be at least 16 characters (use ${VAR} from a secret)")
        host, _, port = self.listen.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{path}.listen", f"expected host:port, got {self.listen!r}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError(f"{path}.tls_cert", "tls_cert and tls_key go together")
        if self.base_path and (not self.base_path.startswith("/") or self.base_path.endswith("/")):
            raise ConfigError(f"{path}.base_path", "must start with '/' and not end with '/'")
        if not 1 <= self.max_batch_events <= 100_000:
            raise ConfigError(f"{path}.max_batch_events", "must be between 1 and 100000")
