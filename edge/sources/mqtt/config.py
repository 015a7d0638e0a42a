"""YAML options of an ``mqtt`` source (every key is explained in edge/sources/mqtt/README.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from edge.config import SourceBase
from edge.configtypes import ByteSize, ConfigError, Duration, Secret, check_url
from edge.sources.mqtt.parse import Subscription
from edge.spool import QUARANTINE_RAW_MAX


@dataclass
class Config(SourceBase):
    url: str = "mqtt://mosquitto:1883"  # mqtt://host[:1883] or mqtts://host[:8883]
    username: str | None = None
    password: Secret = Secret("")
    client_id: str | None = None  # default: zerobus-edge-<appliance_id>-<source name>; must stay fixed
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    session_expiry: Duration = Duration(7 * 86400)  # MQTT 5: how long the broker keeps our session offline
    keepalive: Duration = Duration(30)
    connect_timeout: Duration = Duration(10)
    ca_file: str | None = None  # mqtts: CA bundle to verify the broker; default: the system CAs
    cert_file: str | None = None  # client certificate (PEM) for brokers that require one
    key_file: str | None = None
    key_password: Secret = Secret("")
    subscriptions: list[Subscription] = field(default_factory=list)
    max_inflight: int = 1000  # MQTT 5 Receive Maximum: unacknowledged messages the broker may send us
    batch_max: int = 2000  # messages per spool commit at most
    batch_delay: Duration = Duration(0.005)  # wait this long after the first message for more to join its commit
    max_payload_bytes: ByteSize = ByteSize(256 * 1024)  # larger payloads are quarantined, not parsed
    quarantine_max_bytes: ByteSize = ByteSize(64 * 1024)  # raw bytes kept per quarantined payload
    reconnect_initial: Duration = Duration(1)
    reconnect_max: Duration = Duration(30)
    auth_backoff: Duration = Duration(60)  # wait after the broker refused our credentials

    RENAMED = {"backoff_initial": "reconnect_initial", "backoff_max": "reconnect_max"}
    # 0: MQTT 5 session ends with the connection; no delay; keep no raw bytes of a quarantined payload.
    ZERO_OK = ("session_expiry", "batch_delay", "quarantine_max_bytes")

    def validate(self, path: str) -> None:
        super().validate(path)
        check_url(self.url, f"{path}.url", ("mqtt", "mqtts"))
        if not self.subscriptions:
            raise ConfigError(f"{path}.subscriptions", "at least one subscription is needed")
        if self.client_id is not None and not 1 <= len(self.client_id.encode()) <= 65535:
            raise ConfigError(f"{path}.client_id", "must not be empty")
        if (self.cert_file is None) != (self.key_file is None) and self.cert_file is None:
            raise ConfigError(f"{path}.cert_file", "key_file is set: also set cert_file (the client certificate)")
        if not 1 <= self.max_inflight <= 65535:
            raise ConfigError(f"{path}.max_inflight", "must be between 1 and 65535")
        if not 1 <= self.batch_max <= 100_000:
            raise ConfigError(f"{path}.batch_max", "must be between 1 and 100000")
        if not 0 <= self.batch_delay <= 1:
            raise ConfigError(f"{path}.batch_delay", "must be between 0 and 1s")
        if not 5 <= self.keepalive <= 65535:
            raise ConfigError(f"{path}.keepalive", "must be between 5s and 65535s")
        if self.quarantine_max_bytes > QUARANTINE_RAW_MAX:  # what the spool stores at most per payload
            raise ConfigError(f"{path}.quarantine_max_bytes", f"must be at most {QUARANTINE_RAW_MAX} bytes (1MiB)")
        if self.password and not self.username:
            raise ConfigError(f"{path}.username", "a password is set but no username")
        for key in ("ca_file", "cert_file", "key_file"):
            if getattr(self, key) and not parse_url(self.url)[0]:
                raise ConfigError(f"{path}.{key}", "TLS files need an mqtts:// url")
        sp = [i for i, s in enumerate(self.subscriptions) if s.format == "sparkplug"]
        if sp and any(self.subscriptions[i].qos == 0 for i in sp):
            raise ConfigError(f"{path}.subscriptions[{sp[0]}].qos", "Sparkplug needs qos 1 (BIRTH messages must not be lost)")


def parse_url(url: str) -> tuple[bool, str, int]:
    """(tls, host, port) from mqtt://host[:port] or mqtts://host[:port]."""
    u = urlsplit(url)
    if u.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"must start with mqtt:// or mqtts://, got {url!r}")
    if not u.hostname:
        raise ValueError(f"no host in {url!r}")
    if u.username or u.password:
        raise ValueError("put credentials in username/password, not in the url")
    if u.path not in ("", "/") or u.query:
        raise ValueError(f"unexpected path or query in {url!r}")
    tls = u.scheme == "mqtts"
    try:
        port = u.port or (8883 if tls else 1883)
    except ValueError:
        raise ValueError(f"bad port in {url!r}") from None
    return tls, u.hostname, port
