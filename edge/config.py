"""The appliance's one YAML config file: load, interpolate secrets, validate.

Every error names the field path (``zerobus.batch_max_records: expected an
integer, got 'many'``) and the CLI exits non-zero with it. Values may use
``${VAR}`` / ``${VAR:-default}``; when ``VAR`` is unset or empty and ``VAR_FILE``
names a file (a Docker secret, or a credential generated at first start), the
file's content is used. Secret values never appear
in errors or reprs.

Each source type owns its options: ``edge/sources/<type>.py`` defines a
``Config`` dataclass, which ``load`` builds for every entry of ``sources``.
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from edge.configtypes import ByteSize, ConfigError, Duration, Secret, build

SOURCE_TYPES = {
    "synthetic": "edge.sources.synthetic",
    "mqtt": "edge.sources.mqtt",
    "opcua": "edge.sources.opcua",
    "modbus": "edge.sources.modbus",
    "http": "edge.sources.http",
}

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_TABLE = re.compile(r"^[A-Za-z0-9_]+\.[A-Za-z0-9_]+\.[A-Za-z0-9_]+$")


@dataclass
class SpoolConfig:
    path: str = "/data/spool.db"
    max_bytes: ByteSize = ByteSize(10 * 1024**3)
    when_full: Literal["block", "drop_oldest", "drop_newest"] = "block"
    max_age: Duration | None = None
    min_free_bytes: ByteSize = ByteSize(256 * 1024**2)

    def validate(self, path: str) -> None:
        if self.max_bytes < 1024**2:
            raise ConfigError(f"{path}.max_bytes", "must be at least 1MiB")


@dataclass
class ZerobusConfig:
    endpoint: str = "http://127.0.0.1:50051"
    workspace_url: str = "http://127.0.0.1:8090"
    table: str = "main.edge.readings"
    client_id: str = "edge"
    client_secret: Secret = Secret("")
    batch_max_records: int = 5000
    batch_max_bytes: ByteSize = ByteSize(4 * 1024**2)
    max_inflight_batches: int = 4
    streams: int = 1
    ack_timeout: Duration = Duration(30)
    backoff_initial: Duration = Duration(0.5)
    backoff_max: Duration = Duration(30)
    blocked_retry: Duration = Duration(300)
    application_name: str = "zerobus-edge"
    warehouse_id: str | None = None  # SQL warehouse for `edge table create` and `edge verify` (not the hot path)

    def validate(self, path: str) -> None:
        if not _TABLE.match(self.table):
            raise ConfigError(f"{path}.table", f"must be catalog.schema.table (letters, digits, _), got {self.table!r}")
        if not 1 <= self.batch_max_records <= 100_000:
            raise ConfigError(f"{path}.batch_max_records", "must be between 1 and 100000")
        # One ingest call may not exceed 10,420,224 bytes (the SDK refuses it as non-retriable).
        if not 1024 <= self.batch_max_bytes <= 10_000_000:
            raise ConfigError(f"{path}.batch_max_bytes", "must be between 1KiB and 10MB")
        if not 1 <= self.max_inflight_batches <= 64:
            raise ConfigError(f"{path}.max_inflight_batches", "must be between 1 and 64")
        if not 1 <= self.streams <= 16:
            raise ConfigError(f"{path}.streams", "must be between 1 and 16")
        for key in ("endpoint", "workspace_url"):
            if not re.match(r"^https?://[^/\s]+", getattr(self, key)):
                raise ConfigError(f"{path}.{key}", "must be an http:// or https:// URL")
        if self.workspace_url.endswith("/"):
            # The SDK appends /oidc/v1/token verbatim: a trailing slash breaks the token fetch.
            self.workspace_url = self.workspace_url.rstrip("/")


@dataclass
class SourceBase:
    """Keys every source has; a source module's Config subclasses this."""

    name: str
    type: str
    enabled: bool = True

    def validate(self, path: str) -> None:
        if not _NAME.match(self.name):
            raise ConfigError(f"{path}.name", "letters, digits, '_', '.', '-' only (max 64)")


@dataclass
class LoggingConfig:
    level: Literal["debug", "info", "warning", "error"] = "info"


@dataclass
class Config:
    appliance_id: str
    spool: SpoolConfig = field(default_factory=SpoolConfig)
    zerobus: ZerobusConfig = field(default_factory=ZerobusConfig)
    sources: list[Any] = field(default_factory=list)
    admin: Any = None
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    data_dir: str = "/data"

    def validate(self, path: str) -> None:
        if not _NAME.match(self.appliance_id):
            raise ConfigError("appliance_id", "letters, digits, '_', '.', '-' only (max 64)")

    def source(self, name: str) -> Any:
        for s in self.sources:
            if s.name == name:
                return s
        raise KeyError(name)


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(value: Any, env: dict[str, str], path: str = "", only: str | None = None) -> Any:
    """Replace ${VAR} / ${VAR:-default} in every string of a parsed YAML tree.

    With ``only`` (a top-level key), an unset variable outside that section becomes
    an empty string instead of an error: the admin page reads the whole file but
    must not need the forwarder's or the sources' secrets in its environment.
    """
    if isinstance(value, dict):
        return {k: interpolate(v, env, f"{path}.{k}" if path else str(k), only) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, f"{path}[{i}]", only) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def sub(m: re.Match) -> str:
        var, default = m.group(1), m.group(2)
        file_var = env.get(f"{var}_FILE")
        if env.get(var) or (var in env and not file_var):
            return env[var]
        if file_var:
            try:
                return Path(file_var).read_text().strip()
            except OSError as exc:
                raise ConfigError(path, f"${{{var}}}: cannot read {var}_FILE ({exc.strerror})") from None
        if default is not None:
            return default
        if only is not None and path.split(".", 1)[0].split("[", 1)[0] != only:
            return ""
        raise ConfigError(path, f"environment variable {var} is not set (nor {var}_FILE)")

    whole = _VAR.fullmatch(value)
    out = _VAR.sub(sub, value)
    # "${PORT}" alone may stand for a number or a bool: let YAML type it.
    if whole and out and not any(c in out for c in "\n:#{}[]"):
        try:
            typed = yaml.safe_load(out)
        except yaml.YAMLError:
            typed = out
        if isinstance(typed, (int, float, bool)):
            return typed
    return out


def _build_source(raw: Any, path: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(path, "expected a mapping with at least name and type")
    kind = raw.get("type")
    if kind not in SOURCE_TYPES:
        raise ConfigError(f"{path}.type", f"must be one of {', '.join(sorted(SOURCE_TYPES))}, got {kind!r}")
    try:
        module = importlib.import_module(SOURCE_TYPES[kind])
    except ModuleNotFoundError as exc:
        raise ConfigError(f"{path}.type", f"source type {kind!r} is not available in this build ({exc.name})") from None
    return build(module.Config, raw, path)


def parse(data: Any, env: dict[str, str] | None = None, *, section: str | None = None) -> Config:
    """Validate an already-parsed YAML document (``section``: see ``interpolate``'s ``only``)."""
    env = dict(os.environ) if env is None else env
    if not isinstance(data, dict):
        raise ConfigError("", "the config file must be a YAML mapping")
    data = interpolate(data, env, only=section)
    raw_sources = data.get("sources", [])
    raw_admin = data.get("admin")
    cfg = build(Config, {**data, "sources": [], "admin": None})
    if not isinstance(raw_sources, list):
        raise ConfigError("sources", "expected a list")
    cfg.sources = [_build_source(s, f"sources[{i}]") for i, s in enumerate(raw_sources)]
    seen: set[str] = set()
    for i, s in enumerate(cfg.sources):
        if s.name in seen:
            raise ConfigError(f"sources[{i}].name", f"duplicate source name {s.name!r}")
        seen.add(s.name)
    cfg.admin = _build_admin(raw_admin)
    return cfg


def _build_admin(raw: Any) -> Any:
    try:
        module = importlib.import_module("edge.admin.settings")
    except ModuleNotFoundError:
        if raw:
            raise ConfigError("admin", "the admin page is not available in this build") from None
        return None
    return build(module.AdminConfig, raw or {}, "admin")


def load(path: str | os.PathLike, env: dict[str, str] | None = None, *, section: str | None = None) -> Config:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError("", f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError("", f"{path} is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return parse(data, env, section=section)
