"""YAML options of an ``opcua`` source (every key is explained in edge/sources/opcua/README.md)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Literal

from edge.config import SourceBase
from edge.configtypes import ConfigError, Duration, Secret, check_url

_PROPERTY = re.compile(r"^(\d+:)?[^/:\s][^/]*$")
_NODEID = re.compile(r"^(?:(?:ns=\d+|nsu=[^;]+);)?(?:i=\d+|s=.+|g=[0-9a-fA-F-]{36}|b=.+)$")


@dataclass
class FolderSpec:
    """Browse ``root`` recursively and subscribe to every variable whose relative path matches."""

    root: str  # a NodeId (ns=2;s=Plant) or a browse path (Objects/2:Plant)
    include: list[str] = field(default_factory=lambda: ["*"])  # fnmatch on the path below root
    exclude: list[str] = field(default_factory=list)
    max_depth: int = 10

    def validate(self, path: str) -> None:
        if not self.root.strip():
            raise ConfigError(f"{path}.root", "must name a NodeId or a browse path")
        if not 1 <= self.max_depth <= 64:
            raise ConfigError(f"{path}.max_depth", "must be between 1 and 64")


@dataclass
class GroupConfig:
    """Nodes sharing one subscription's publishing interval and one set of monitoring parameters."""

    name: str = "default"
    publishing_interval: Duration = Duration(1.0)
    sampling_interval: Duration = Duration(0.25)
    # None: enough to hold every sample of one publishing interval, twice over.
    queue_size: int | None = None
    deadband_type: Literal["none", "absolute", "percent"] = "none"
    deadband_value: float = 0.0
    nodes: list[str] = field(default_factory=list)  # NodeIds: ns=2;s=Line1.Temp, nsu=urn:x;i=1001
    browse_paths: list[str] = field(default_factory=list)  # Objects/2:Plant/2:Line1/2:Temp
    folders: list[FolderSpec] = field(default_factory=list)

    ZERO_OK = ("sampling_interval",)  # 0: as fast as the server samples

    def validate(self, path: str) -> None:
        if not 0.01 <= self.publishing_interval <= 3600:
            raise ConfigError(f"{path}.publishing_interval", "must be between 10ms and 1h")
        if not 0 <= self.sampling_interval <= 3600:
            raise ConfigError(f"{path}.sampling_interval", "must be between 0 (fastest) and 1h")
        if self.queue_size is not None and not 1 <= self.queue_size <= 100_000:
            raise ConfigError(f"{path}.queue_size", "must be between 1 and 100000")
        if self.deadband_value < 0 or (self.deadband_type == "percent" and self.deadband_value > 100):
            raise ConfigError(f"{path}.deadband_value", "must be >= 0 (and <= 100 for percent)")
        for i, n in enumerate(self.nodes):
            if not _NODEID.match(n.strip()):
                raise ConfigError(f"{path}.nodes[{i}]", f"not a NodeId (ns=2;s=Name, ns=2;i=42, nsu=urn:...;s=Name): {n!r}")
        for i, p in enumerate(self.browse_paths):
            if not p.strip().strip("/"):
                raise ConfigError(f"{path}.browse_paths[{i}]", "empty browse path")
        if not (self.nodes or self.browse_paths or self.folders):
            raise ConfigError(path, "a group needs at least one of nodes, browse_paths, folders")

    def effective_queue_size(self) -> int:
        if self.queue_size is not None:
            return self.queue_size
        if self.sampling_interval <= 0:
            return 10
        return max(1, min(1000, 2 * math.ceil(self.publishing_interval / self.sampling_interval)))


@dataclass
class SecurityConfig:
    mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    policy: Literal["Basic256Sha256"] = "Basic256Sha256"
    # Relative paths are under the appliance's data_dir.
    pki_dir: str = "pki/opcua"  # own/ (our certificate, generated if absent), trusted/, rejected/
    application_uri: str | None = None  # default urn:zerobus-edge:<appliance_id>
    certificate_host: str | None = None  # DNS name put into a generated certificate; default: this host's name
    certificate_days: int = 1825

    def validate(self, path: str) -> None:
        if not 1 <= self.certificate_days <= 36500:
            raise ConfigError(f"{path}.certificate_days", "must be between 1 and 36500")


@dataclass
class BackfillConfig:
    enabled: bool = True
    max_gap: Duration = Duration(3600)  # never ask history further back than this
    max_values_per_node: int = 10_000
    nodes_per_request: int = 100
    checkpoint_interval: Duration = Duration(5.0)

    def validate(self, path: str) -> None:
        if not 1 <= self.max_values_per_node <= 1_000_000:
            raise ConfigError(f"{path}.max_values_per_node", "must be between 1 and 1000000")
        if not 1 <= self.nodes_per_request <= 1000:
            raise ConfigError(f"{path}.nodes_per_request", "must be between 1 and 1000")
        if not 0.1 <= self.checkpoint_interval <= 600:
            raise ConfigError(f"{path}.checkpoint_interval", "must be between 100ms and 10m")


@dataclass
class Config(SourceBase):
    endpoint: str = ""
    username: str | None = None
    password: Secret = Secret("")
    security: SecurityConfig = field(default_factory=SecurityConfig)
    groups: list[GroupConfig] = field(default_factory=list)
    timeout: Duration = Duration(10.0)  # every request to the server
    watchdog_interval: Duration = Duration(3.0)  # liveness probe; 1s gave false disconnects under load
    reconnect_initial: Duration = Duration(1.0)
    reconnect_max: Duration = Duration(30.0)
    subscribe_batch: int = 1000  # monitored items per CreateMonitoredItems request
    max_items_per_subscription: int = 20_000
    read_units: bool = True  # read each variable's unit property (unit_property) into the unit column
    # The property (or properties, first one present wins) holding the unit: EUInformation, LocalizedText or text.
    unit_property: str | list[str] = "EngineeringUnits"
    # Further properties kept as the point's metadata (<data_dir>/<name>.opcua-metadata.json).
    metadata_properties: list[str] = field(default_factory=list)
    load_data_types: bool = False  # load the server's structure definitions so ExtensionObjects decode
    emit_interval: Duration = Duration(0.005)  # group notifications this long before one emit
    emit_max: int = 10_000  # readings per emit
    max_buffered: int = 200_000  # readings held in memory before the subscription stops taking more
    backfill: BackfillConfig = field(default_factory=BackfillConfig)

    ZERO_OK = ("emit_interval",)  # 0: emit every notification at once

    def unit_properties(self) -> list[str]:
        return [self.unit_property] if isinstance(self.unit_property, str) else list(self.unit_property)

    def validate(self, path: str) -> None:
        super().validate(path)
        if not self.unit_properties():
            raise ConfigError(f"{path}.unit_property", "name at least one property (EngineeringUnits)")
        for key, names in (("unit_property", self.unit_properties()), ("metadata_properties", self.metadata_properties)):
            for i, name in enumerate(names):
                if not _PROPERTY.match(name):
                    where = f"{path}.{key}" + (f"[{i}]" if key == "metadata_properties" or isinstance(self.unit_property, list) else "")
                    raise ConfigError(where, f"a property's browse name (Unit, or 2:Unit for one namespace), got {name!r}")
        if "@" in self.endpoint.split("/", 3)[2 if self.endpoint.count("/") >= 2 else 0]:
            raise ConfigError(f"{path}.endpoint", "put credentials in username/password, not in the URL")
        if not re.match(r"^opc\.tcp://[^/\s:@]+(:\d+)?(/.*)?$", self.endpoint):
            raise ConfigError(f"{path}.endpoint", f"must be opc.tcp://host:port[/path], got {self.endpoint!r}")
        check_url(self.endpoint, f"{path}.endpoint", ("opc.tcp",), path_ok=True)  # a server may have a path
        if self.password and not self.username:
            raise ConfigError(f"{path}.password", "is set but username is not")
        if not self.groups:
            raise ConfigError(f"{path}.groups", "at least one group of nodes is required")
        names = [g.name for g in self.groups]
        if len(set(names)) != len(names):
            raise ConfigError(f"{path}.groups", "group names must be unique")
        if not 0.5 <= self.timeout <= 300:
            raise ConfigError(f"{path}.timeout", "must be between 500ms and 5m")
        if not 1 <= self.watchdog_interval <= 60:
            raise ConfigError(f"{path}.watchdog_interval", "must be between 1s and 60s (2-5s recommended)")
        if not 0.1 <= self.reconnect_initial <= self.reconnect_max <= 3600:
            raise ConfigError(f"{path}.reconnect_initial", "need 100ms <= reconnect_initial <= reconnect_max <= 1h")
        if not 1 <= self.subscribe_batch <= 10_000:
            raise ConfigError(f"{path}.subscribe_batch", "must be between 1 and 10000")
        if not 1 <= self.max_items_per_subscription <= 1_000_000:
            raise ConfigError(f"{path}.max_items_per_subscription", "must be between 1 and 1000000")
        if not 0 <= self.emit_interval <= 1:
            raise ConfigError(f"{path}.emit_interval", "must be between 0 and 1s")
        if not 1 <= self.emit_max <= 100_000:
            raise ConfigError(f"{path}.emit_max", "must be between 1 and 100000")
        if not self.emit_max <= self.max_buffered <= 10_000_000:
            raise ConfigError(f"{path}.max_buffered", "must be between emit_max and 10000000")
