"""Modbus source configuration: the YAML keys, and their validation into PointSpecs and planned blocks.

Every option is explained in ``edge/sources/modbus/README.md`` (a test keeps the
two in step). Pure: no I/O. Errors name the field, e.g.
``sources[0].devices[1].points[3].length: is required for type string``.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass, field
from typing import Literal

from edge.config import SourceBase
from edge.configtypes import ConfigError, Duration, build
from edge.sources.modbus import decode as dec
from edge.sources.modbus import regmap
from edge.sources.modbus.plan import (
    MAX_BITS, MAX_REGISTERS, TABLES, Block, PointSpec, check_overlaps, parse_address, plan_blocks,
)

_HOST = re.compile(r"^(?:[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\])$")  # a name, an IPv4 or a [IPv6] address

Table = Literal["coils", "discrete_inputs", "holding_registers", "input_registers"]
DType = Literal["bool", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "string"]
Order = Literal["ABCD", "DCBA", "BADC", "CDAB"]


@dataclass
class PointConfig:
    name: str
    address: int | str
    table: Table | None = None
    type: DType | None = None  # default: bool on coils/discrete_inputs, uint16 on registers
    order: Order | None = None  # default: the device's, else the source's
    length: int | None = None  # registers, for type string
    bit: int | None = None  # 0..15, for type bool on a register
    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = None
    poll_interval: Duration | None = None
    deadband: float | None = None


@dataclass
class ArrayConfig:
    """``count`` points of one type at consecutive addresses, named by a ``{i}`` template."""

    name: str  # e.g. "temp_{i}" or "zone{i:02d}/temperature"
    start: int | str  # address of element first_index, any notation of PointConfig.address
    count: int
    table: Table | None = None
    type: DType | None = None
    order: Order | None = None
    length: int | None = None
    bit: int | None = None
    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = None
    poll_interval: Duration | None = None
    deadband: float | None = None
    step: int | None = None  # registers from one element to the next; default: the type's width
    first_index: int = 0  # the {i} of the first element


@dataclass
class DeviceConfig:
    device_id: int
    points: list[PointConfig] = field(default_factory=list)
    name: str | None = None  # shown in devices_offline; default "device<id>"
    order: Order | None = None
    poll_interval: Duration | None = None
    arrays: list[ArrayConfig] = field(default_factory=list)
    register_map: str | None = None  # a CSV file, one point per row (regmap.py)

    def validate(self, path: str) -> None:
        if not 0 <= self.device_id <= 255:
            raise ConfigError(f"{path}.device_id", f"must be 0..255, got {self.device_id}")
        if not (self.points or self.arrays or self.register_map):
            raise ConfigError(f"{path}.points", "a device needs at least one point (points, arrays or register_map)")


@dataclass
class Config(SourceBase):
    host: str = ""
    port: int = 502
    devices: list[DeviceConfig] = field(default_factory=list)
    address_base: Literal[0, 1] = 0
    order: Order = "ABCD"
    connections: int = 1
    timeout: Duration = Duration(1.0)
    retries: int = 0
    reconnect_initial: Duration = Duration(0.5)
    reconnect_max: Duration = Duration(10.0)
    poll_interval: Duration = Duration(1.0)
    max_block_registers: int = MAX_REGISTERS
    max_block_bits: int = MAX_BITS
    max_gap: int = 0
    report: Literal["always", "on_change"] = "always"
    deadband: float = 0.0
    heartbeat: Duration = Duration(60.0)
    bad_repeat: Duration = Duration(10.0)
    offline_retry: Duration = Duration(5.0)
    isolate_reads: int = 8
    reprobe_interval: Duration = Duration(300.0)

    RENAMED = {"reconnect_delay": "reconnect_initial", "reconnect_delay_max": "reconnect_max"}
    ZERO_OK = ("bad_repeat",)  # 0: report a bad reading on every poll

    def validate(self, path: str) -> None:
        super().validate(path)
        if not self.host.strip():
            raise ConfigError(f"{path}.host", "is required (the PLC or gateway address)")
        if not _HOST.match(self.host):
            raise ConfigError(f"{path}.host", f"a host name or address only (no scheme, port or path), got {self.host!r}")
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"{path}.port", f"must be 1..65535, got {self.port}")
        if not self.devices:
            raise ConfigError(f"{path}.devices", "at least one device with points is required")
        if not 1 <= self.connections <= 16:
            raise ConfigError(f"{path}.connections", "must be 1..16 (check how many the device accepts)")
        if not 0.05 <= self.timeout <= 60:
            raise ConfigError(f"{path}.timeout", "must be between 50ms and 60s")
        if not 0 <= self.retries <= 5:
            raise ConfigError(f"{path}.retries", "must be 0..5")
        if not 1 <= self.max_block_registers <= MAX_REGISTERS:
            raise ConfigError(f"{path}.max_block_registers", f"must be 1..{MAX_REGISTERS} (the protocol limit)")
        if not 1 <= self.max_block_bits <= MAX_BITS:
            raise ConfigError(f"{path}.max_block_bits", f"must be 1..{MAX_BITS} (the protocol limit)")
        if not 0 <= self.max_gap <= MAX_REGISTERS:
            raise ConfigError(f"{path}.max_gap", f"must be 0..{MAX_REGISTERS}")
        if not 0 <= self.isolate_reads <= 1000:
            raise ConfigError(f"{path}.isolate_reads", "must be 0..1000 (0: never bisect a failing block)")
        for key in ("poll_interval", "heartbeat", "offline_retry", "reprobe_interval"):
            if getattr(self, key) < 0.001:
                raise ConfigError(f"{path}.{key}", "must be at least 1ms")
        self.plan(path)  # only to raise the first ConfigError, naming the point; validate changes nothing

    def plan(self, path: str = "") -> tuple[list[PointSpec], list[Block]]:
        """The validated points and the block reads that cover them (pure; ConfigError names the field)."""
        points = build_points(self, path)
        return points, plan_blocks(points, max_registers=self.max_block_registers, max_bits=self.max_block_bits,
                                   max_gap=self.max_gap)

    @functools.cached_property
    def _planned(self) -> tuple[list[PointSpec], list[Block]]:
        return self.plan()

    @property
    def points(self) -> list[PointSpec]:
        return self._planned[0]

    @property
    def blocks(self) -> list[Block]:
        return self._planned[1]


def build_points(cfg: Config, path: str) -> list[PointSpec]:
    """Validate every point against its table and type; raise ConfigError naming the field."""
    out: list[PointSpec] = []
    names: dict[str, str] = {}
    ids: dict[int, str] = {}
    for di, dev in enumerate(cfg.devices):
        dpath = f"{path}.devices[{di}]"
        if dev.device_id in ids:
            raise ConfigError(f"{dpath}.device_id", f"device {dev.device_id} is already configured at {ids[dev.device_id]}")
        ids[dev.device_id] = dpath
        for ppath, pt, columns in device_points(dev, dpath):
            try:
                out.append(_point(cfg, dev, pt, ppath, names))
            except ConfigError as exc:
                if columns is None:
                    raise
                raise _in_column(exc, ppath, columns) from None
    check_overlaps(out)
    return out


def _in_column(exc: ConfigError, ppath: str, columns: dict[str, str]) -> ConfigError:
    """An error about a CSV row's field, naming the column as the file spells its header."""
    field_name = exc.path[len(ppath) + 1:] if exc.path.startswith(ppath + ".") else ""
    if not field_name:
        return exc
    return ConfigError(ppath, f"column {columns.get(field_name, field_name)!r}: {exc.message}")


def device_points(dev: DeviceConfig, dpath: str) -> list[tuple[str, PointConfig, dict[str, str] | None]]:
    """(path, point, CSV column headers or None) for the device's points, arrays and register map."""
    out: list[tuple[str, PointConfig, dict[str, str] | None]] = [
        (f"{dpath}.points[{i}]", pt, None) for i, pt in enumerate(dev.points)]
    for ai, arr in enumerate(dev.arrays):
        fields = {f.name: getattr(arr, f.name) for f in dataclasses.fields(arr)}
        for ppath, mapping in regmap.expand_array(fields, f"{dpath}.arrays[{ai}]"):
            out.append((ppath, build(PointConfig, mapping, ppath), None))
    if dev.register_map:
        where = f"{dpath}.register_map"
        text = regmap.read_text(dev.register_map, where)
        try:
            rows = list(regmap.parse_csv(text, dev.register_map))
        except ConfigError as exc:
            raise ConfigError(f"{where}[{exc.path}]", exc.message) from None
        for row_path, _name, mapping, columns in rows:
            ppath = f"{where}[{row_path}]"
            try:
                pt = build(PointConfig, mapping, ppath)
            except ConfigError as exc:
                raise _in_column(exc, ppath, columns) from None
            out.append((ppath, pt, columns))
    return out


def _point(cfg: Config, dev: DeviceConfig, pt: PointConfig, ppath: str, names: dict[str, str]) -> PointSpec:
    """One point validated against its table and type (ConfigError names the field)."""
    if pt.name in names:
        raise ConfigError(f"{ppath}.name", f"duplicate point name {pt.name!r} (also at {names[pt.name]})")
    names[pt.name] = ppath
    table, address = parse_address(pt.address, pt.table, cfg.address_base, ppath)
    bit_table = TABLES[table][1]
    dtype = pt.type or ("bool" if bit_table else "uint16")
    order = pt.order or dev.order or cfg.order
    if bit_table and dtype != "bool":
        raise ConfigError(f"{ppath}.type", f"{table} hold single bits: type must be bool, got {dtype}")
    if bit_table and pt.bit is not None:
        raise ConfigError(f"{ppath}.bit", f"only for a bool inside a register, not on {table}")
    if pt.bit is not None and not 0 <= pt.bit <= 15:
        raise ConfigError(f"{ppath}.bit", f"must be 0..15, got {pt.bit}")
    if not bit_table and dtype == "bool" and pt.bit is None:
        raise ConfigError(f"{ppath}.bit", "is required for type bool on a register (0 = least significant)")
    if pt.bit is not None and dtype != "bool":
        raise ConfigError(f"{ppath}.bit", f"only applies to type bool, not {dtype}")
    if dtype == "string":
        if pt.length is None:
            raise ConfigError(f"{ppath}.length", "is required for type string (number of registers, 2 characters each)")
        if not 1 <= pt.length <= MAX_REGISTERS:
            raise ConfigError(f"{ppath}.length", f"must be 1..{MAX_REGISTERS} registers")
        if order not in dec.STRING_ORDERS:
            raise ConfigError(f"{ppath}.order", f"strings support ABCD or BADC, not {order}")
    elif pt.length is not None:
        raise ConfigError(f"{ppath}.length", f"only applies to type string, not {dtype}")
    if pt.scale == 0:
        raise ConfigError(f"{ppath}.scale", "must not be 0")
    if dtype in ("bool", "string") and (pt.scale != 1.0 or pt.offset != 0.0):
        raise ConfigError(f"{ppath}.scale", f"scale/offset do not apply to type {dtype}")
    interval = float(pt.poll_interval or dev.poll_interval or cfg.poll_interval)
    if interval < 0.001:
        raise ConfigError(f"{ppath}.poll_interval", "must be at least 1ms")
    deadband = cfg.deadband if pt.deadband is None else pt.deadband
    if deadband < 0:
        raise ConfigError(f"{ppath}.deadband", "must not be negative")
    return PointSpec(
        name=pt.name, path=ppath, device_id=dev.device_id, table=table, address=address,
        count=1 if bit_table else dec.register_count(dtype, pt.length), dtype=dtype, order=order,
        bit=pt.bit, scale=pt.scale, offset=pt.offset, unit=pt.unit, interval=interval, deadband=deadband,
    )


__all__ = ["ArrayConfig", "Config", "DeviceConfig", "PointConfig", "build_points", "device_points"]
