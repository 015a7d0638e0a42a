"""The appliance's one YAML config file: load, interpolate secrets, validate.

The schema is the config dataclasses (here, ``edge/sources/<type>/config.py``,
``edge/adminconfig.py``), validated by pydantic through
``edge.configtypes.build``. Every error names the field path
(``zerobus.batch_max_records: expected an integer``) and the CLI exits non-zero
with it.

Values may use ``${VAR}`` / ``${VAR:-default}`` (``edge/configinterp.py``); when ``VAR`` is unset or empty
and ``VAR_FILE`` names a file (a Docker secret, or a credential generated at
first start), the file's content is used. A reference always yields a string,
converted only by the field's declared type (``0012`` stays ``"0012"`` in a
string field; ``"1883"`` becomes 1883 in an integer field). A malformed
reference (``${VAR``, ``${VAR }``, ``${}``) is an error naming the field. A
value that came from a variable is never echoed in an error; secrets never
appear in errors or reprs.

``load(path, section="admin")`` reads only what that service needs: the
``Secret`` fields of the other sections are not interpolated at all (no
variable or file is read) and hold a ``Withheld`` secret; a value there that is
only a variable this service's environment lacks keeps the field's default.
"""

from __future__ import annotations

import importlib
import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from edge.adminconfig import AdminConfig
from edge.configinterp import Interpolation
from edge.configvalues import hiding
from edge.configtypes import ByteSize, ConfigError, Duration, Secret, build, check_listen, check_url, fields_of

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
    side_max_bytes: ByteSize | None = None  # quarantine + dead letters, within max_bytes (default max_bytes/8)
    ballast_bytes: ByteSize | None = None  # disk held back for a full disk (default max_bytes/32, 1..32MiB)

    ZERO_OK = ("min_free_bytes", "ballast_bytes")  # 0: no free-space check; no ballast

    def validate(self, path: str) -> None:
        if self.max_bytes < 1024**2:
            raise ConfigError(f"{path}.max_bytes", "must be at least 1MiB")
        if self.side_max_bytes is not None and self.side_max_bytes >= self.max_bytes:
            raise ConfigError(f"{path}.side_max_bytes", "must be less than max_bytes")


@dataclass
class ZerobusConfig:
    endpoint: str = "http://127.0.0.1:50051"
    workspace_url: str = "http://127.0.0.1:8090"
    table: str = "main.edge.readings"
    client_id: str = "edge"
    client_secret: Secret = Secret("")
    batch_max_records: int = 5000
    batch_max_bytes: ByteSize = ByteSize(4 * 1024**2)
    max_inflight_batches: int = 16  # calls in flight per stream, at most; the bytes in flight adapt ...
    max_inflight_bytes: ByteSize = ByteSize(64 * 1024**2)  # ... to rate x ack latency, up to this (memory)
    streams: int = 4  # at most; more open only while one stream is quota-bound
    ack_timeout: Duration = Duration(30)
    reconnect_initial: Duration = Duration(0.5)  # stream retry after a failure, doubling with jitter ...
    reconnect_max: Duration = Duration(30)  # ... up to this
    blocked_retry: Duration = Duration(300)
    application_name: str = "zerobus-edge"
    warehouse_id: str | None = None  # SQL warehouse for `edge table create` and `edge verify` (not the hot path)

    RENAMED = {"backoff_initial": "reconnect_initial", "backoff_max": "reconnect_max"}
    # The SDK appends /oidc/v1/token verbatim: a trailing slash breaks the token fetch.
    NORMALISE = {"workspace_url": lambda url: url.rstrip("/")}

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
        if not 64 * 1024 <= self.max_inflight_bytes <= 1024**3:
            raise ConfigError(f"{path}.max_inflight_bytes", "must be between 64KiB and 1GiB")
        if not 1 <= self.streams <= 16:
            raise ConfigError(f"{path}.streams", "must be between 1 and 16")
        for key in ("endpoint", "workspace_url"):
            check_url(getattr(self, key), f"{path}.{key}", ("http", "https"))


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


def _child_type(tp: Any, hints: dict[str, Any], key: str, parent: dict) -> Any:
    if tp is Config and key == "sources":
        return list[_SourceType]
    if tp is Config and key == "admin":
        return AdminConfig
    if tp is _SourceType:
        cls = _source_class(parent.get("type"))
        return fields_of(cls).get(key, Any) if cls else Any
    return hints.get(key, Any)


class _SourceType:
    """Marks a ``sources`` entry for the interpolation walk: its type is chosen by its ``type`` key."""


def _source_class(kind: Any) -> type | None:
    if kind not in SOURCE_TYPES:
        return None
    try:
        return importlib.import_module(SOURCE_TYPES[kind]).Config
    except ModuleNotFoundError:
        return None


def _build_source(raw: Any, path: str, origins: dict[str, list[str]]) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(path, "expected a mapping with at least name and type")
    kind = raw.get("type")
    if kind not in SOURCE_TYPES:
        raise ConfigError(f"{path}.type", f"must be one of {', '.join(sorted(SOURCE_TYPES))}, got {kind!r}")
    try:
        module = importlib.import_module(SOURCE_TYPES[kind])
    except ModuleNotFoundError as exc:
        raise ConfigError(f"{path}.type", f"source type {kind!r} is not available in this build ({exc.name})") from None
    return build(module.Config, raw, path, origins=origins)


_ANY_HOST = ("", "0.0.0.0", "::", "*")


def _addresses(host: str) -> frozenset[str] | None:
    """The addresses a listen host stands for (``None``: every address). ``localhost`` is both
    loopbacks and ``127.0.0.1`` / ``::0:1`` are spelt one way, so two spellings of one address
    collide; other names are compared as written (resolving them here would be I/O)."""
    host = host.strip().lower()
    if host in _ANY_HOST:
        return None
    if host == "localhost":
        return frozenset({"127.0.0.1", "::1"})
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return frozenset({host})
    return None if ip.is_unspecified else frozenset({str(ip)})


def check_listeners(cfg: Config) -> None:
    """No two listeners on one address (``0.0.0.0`` takes the port on every address)."""
    taken: dict[int, list[tuple[str, frozenset[str] | None]]] = {}
    listeners = [(f"sources[{i}].listen", s.listen) for i, s in enumerate(cfg.sources)
                 if getattr(s, "listen", None) and s.enabled]
    if cfg.admin is not None:
        listeners.append(("admin.bind", cfg.admin.bind))
    for path, address in listeners:
        host, port = check_listen(address, path)
        mine = _addresses(host)
        for other_path, other in taken.get(port, []):
            if mine is None or other is None or mine & other:
                raise ConfigError(path, f"port {port} is already taken by {other_path}")
        taken.setdefault(port, []).append((path, mine))


def parse(data: Any, env: dict[str, str] | None = None, *, section: str | None = None) -> Config:
    """Validate an already-parsed YAML document.

    ``section`` (a top-level key, e.g. ``admin``): the other sections' secrets are
    not read (``Withheld``), and a field there given only an unset variable keeps its default.
    """
    env = dict(os.environ) if env is None else env
    if not isinstance(data, dict):
        raise ConfigError("", "the config file must be a YAML mapping")
    interp = Interpolation(env, section, _child_type)
    try:
        with hiding(interp.values):  # every error made while parsing hides what the variables gave
            return _parse(interp.tree(Config, data, ""), interp.origins)
    except ConfigError as exc:
        raise interp.scrub(exc) from None


def _parse(data: dict, origins: dict[str, list[str]]) -> Config:
    raw_sources = data.get("sources", [])
    raw_admin = data.get("admin")
    cfg = build(Config, {**data, "sources": [], "admin": None}, origins=origins)
    if not isinstance(raw_sources, list):
        raise ConfigError("sources", "expected a list")
    sources = [_build_source(s, f"sources[{i}]", origins) for i, s in enumerate(raw_sources)]
    seen: set[str] = set()
    for i, s in enumerate(sources):
        if s.name in seen:
            raise ConfigError(f"sources[{i}].name", f"duplicate source name {s.name!r}")
        seen.add(s.name)
    cfg.sources = sources
    cfg.admin = _build_admin(raw_admin, origins)
    check_listeners(cfg)
    return cfg


def _build_admin(raw: Any, origins: dict[str, list[str]]) -> Any:
    return build(AdminConfig, raw or {}, "admin", origins=origins)


def schema() -> dict:
    """JSON Schema of the whole file (``edge config schema``): each ``sources`` entry by its ``type``."""
    from edge.configtypes import json_schema

    out = json_schema(Config)
    defs = out.setdefault("$defs", {})
    variants = []
    for kind in sorted(SOURCE_TYPES):
        cls = _source_class(kind)
        if cls is None:
            continue
        sub = json_schema(cls)
        defs.update(sub.pop("$defs", {}))
        sub["properties"]["type"] = {"const": kind}
        sub["title"] = f"{kind} source"
        defs[f"source_{kind}"] = sub
        variants.append({"$ref": f"#/$defs/source_{kind}"})
    out["properties"]["sources"] = {"type": "array", "items": {"oneOf": variants}}
    sub = json_schema(AdminConfig)
    defs.update(sub.pop("$defs", {}))
    out["properties"]["admin"] = sub
    return out


class _Loader(yaml.SafeLoader):
    """YAML 1.1 as PyYAML reads it, except that an integer written with leading zeros (``0012``), in
    binary, or with colons (``1:30``) stays a string: YAML 1.1 reads them as octal (10), base 2 and base
    60 (90). A number field still gets the number (converted by its type: ``0502`` -> 502); a string
    field keeps the text."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:int"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"), list("-+0123456789"))


def load(path: str | os.PathLike, env: dict[str, str] | None = None, *, section: str | None = None) -> Config:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError("", f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError("", f"{path} is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return parse(data, env, section=section)
