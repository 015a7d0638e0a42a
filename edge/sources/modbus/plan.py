"""What to read and what to send: pure planning for the Modbus collector.

- ``parse_address``: the address notations we accept (see modbus/README.md);
- ``check_overlaps``: two points sharing a register is a map error, named by field;
- ``plan_blocks``: contiguous block reads (<= 125 registers / 2000 bits per request,
  the protocol's limits) per device, table and poll interval;
- ``ReportFilter``: report-by-exception (change / deadband / heartbeat) and the
  repeat limit for BAD readings.

Addresses inside this module are always protocol (PDU) addresses, 0..65535.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable

from edge.configtypes import ConfigError

# table -> (function code, is a bit table)
TABLES = {
    "coils": (1, True),
    "discrete_inputs": (2, True),
    "holding_registers": (3, False),
    "input_registers": (4, False),
}
_MODICON_PREFIX = {"0": "coils", "1": "discrete_inputs", "3": "input_registers", "4": "holding_registers"}
MAX_REGISTERS = 125  # FC3/FC4 limit per request
MAX_BITS = 2000  # FC1/FC2 limit per request
_HEX = re.compile(r"^0[xX][0-9a-fA-F]{1,4}$")


def parse_address(value: Any, table: str | None, address_base: int, path: str) -> tuple[str, int]:
    """-> (table, PDU address). ``path`` names the point for errors (``sources[0].devices[1].points[3]``).

    - an integer is a plain address in the table given by ``table``; with
      ``address_base: 1`` it is a 1-based register number (1 -> PDU address 0);
    - a hex string ``"0x10"`` is the same as the integer;
    - a 5- or 6-digit string is Modicon notation and names the table itself:
      ``"40001"`` / ``"400001"`` = holding register, PDU address 0; ``3xxxx`` input
      registers, ``1xxxx`` discrete inputs, ``0xxxx`` coils. Modicon numbers are
      always 1-based, whatever ``address_base`` says.
    """
    where = f"{path}.address"
    if isinstance(value, bool):
        raise ConfigError(where, f"expected an address, got {value!r}")
    if isinstance(value, str) and _HEX.match(value.strip()):
        value = int(value.strip(), 16)
    if isinstance(value, int):
        if table is None:
            raise ConfigError(
                f"{path}.table",
                "is required for a numeric address (coils, discrete_inputs, holding_registers, input_registers);"
                " for Modicon notation write the address as a quoted string, e.g. '40001'",
            )
        pdu = value - address_base
        if not 0 <= pdu <= 0xFFFF:
            lo, hi = address_base, 0xFFFF + address_base
            raise ConfigError(where, f"{value} is out of range {lo}..{hi} (address_base: {address_base})")
        return table, pdu
    if isinstance(value, str) and value.isdigit() and len(value) in (5, 6) and value[0] in _MODICON_PREFIX:
        implied = _MODICON_PREFIX[value[0]]
        number = int(value[1:])
        limit = 9999 if len(value) == 5 else 65536
        if not 1 <= number <= limit:
            raise ConfigError(where, f"{value!r}: register number must be 1..{limit} in this notation")
        if table is not None and table != implied:
            raise ConfigError(f"{path}.table", f"is {table} but address {value!r} names {implied}")
        return implied, number - 1
    raise ConfigError(
        where,
        f"expected an integer, a hex string like '0x1A', or Modicon notation like '40001' / '400001', got {value!r}",
    )


@dataclass(frozen=True)
class PointSpec:
    """One configured point after validation; ``path`` is its config path for error messages."""

    name: str
    path: str
    device_id: int
    table: str
    address: int  # PDU address
    count: int  # registers (or 1 bit)
    dtype: str
    order: str
    bit: int | None
    scale: float
    offset: float
    unit: str | None
    interval: float
    deadband: float

    @property
    def is_bit_table(self) -> bool:
        return TABLES[self.table][1]

    @property
    def end(self) -> int:  # exclusive
        return self.address + self.count


def check_overlaps(points: Iterable[PointSpec]) -> None:
    """Raise ConfigError naming the later point when two points share a register (or a bit).

    Bits of one register (``type: bool`` with ``bit``) may share it as long as the bits differ.
    """
    by_area: dict[tuple[int, str], list[PointSpec]] = {}
    for p in points:
        if p.end > 0x10000:
            raise ConfigError(f"{p.path}.address", f"{p.name}: {p.count} registers from {p.address} run past 65535")
        by_area.setdefault((p.device_id, p.table), []).append(p)
    for pts in by_area.values():
        pts.sort(key=lambda p: (p.address, p.end))
        for a, b in zip(pts, pts[1:]):
            if b.address < a.end:
                if a.bit is not None and b.bit is not None and a.address == b.address and a.count == b.count == 1:
                    if a.bit != b.bit:
                        continue
                    raise ConfigError(f"{b.path}.bit", f"{b.name} reads the same bit {b.bit} of register {b.address} as {a.name} ({a.path})")
                raise ConfigError(
                    f"{b.path}.address",
                    f"{b.name} (PDU {b.table} {b.address}..{b.end - 1}) overlaps {a.name} "
                    f"({a.path}, {a.address}..{a.end - 1}) on device {a.device_id}",
                )
        # Bits of one register also clash with a full-width point on it: the sort puts them next to
        # each other, so the pairwise check above already saw them.


@dataclass(frozen=True)
class Block:
    device_id: int
    table: str
    start: int
    count: int
    interval: float
    points: tuple[PointSpec, ...]

    @property
    def function_code(self) -> int:
        return TABLES[self.table][0]


def plan_blocks(
    points: Iterable[PointSpec], *, max_registers: int = MAX_REGISTERS, max_bits: int = MAX_BITS, max_gap: int = 0
) -> list[Block]:
    """Group points into as few contiguous reads as the limits allow.

    Points of one device, table and poll interval join a block while the block
    stays within ``max_registers`` (``max_bits`` for bit tables) and the hole
    before the next point is at most ``max_gap`` registers/bits. Holes are read
    too, so only allow them where the device answers for the unused addresses
    (many answer an unmapped address with exception 2, illegal data address).
    """
    groups: dict[tuple[int, str, float], list[PointSpec]] = {}
    for p in points:
        groups.setdefault((p.device_id, p.table, p.interval), []).append(p)
    blocks: list[Block] = []
    for (dev, table, interval), pts in sorted(groups.items()):
        limit = max_bits if TABLES[table][1] else max_registers
        pts.sort(key=lambda p: (p.address, p.bit or 0))
        cur: list[PointSpec] = []
        start = end = 0
        for p in pts:
            if cur and p.address - end <= max_gap and max(end, p.end) - start <= limit:
                cur.append(p)
                end = max(end, p.end)
                continue
            if cur:
                blocks.append(Block(dev, table, start, end - start, interval, tuple(cur)))
            if p.count > limit:
                raise ConfigError(f"{p.path}.length", f"{p.name} needs {p.count} registers, more than one read ({limit})")
            cur, start, end = [p], p.address, p.end
        if cur:
            blocks.append(Block(dev, table, start, end - start, interval, tuple(cur)))
    return blocks


class ReportFilter:
    """Decides which readings of a poll cycle to send.

    ``mode="always"``: every GOOD reading of every poll. ``mode="on_change"``:
    a GOOD reading is sent when its value moved by more than the point's
    deadband (any change when the deadband is 0; booleans and strings on any
    change), when its quality or status changed, or when ``heartbeat`` seconds
    passed since it was last sent. In both modes a BAD reading is sent when
    the point turns BAD or its status code changes, then repeated every
    ``bad_repeat`` seconds while it stays so (0: every poll), so a dead device
    shows up as BAD rows rather than a silent gap, without flooding the spool.

    Call ``want`` to decide and ``sent`` once the readings were committed.
    """

    def __init__(self, mode: str, heartbeat: float, bad_repeat: float):
        self.mode = mode
        self.heartbeat = heartbeat
        self.bad_repeat = bad_repeat
        self._last: dict[str, tuple[Any, str, int | None, float]] = {}

    def want(self, point: PointSpec, value: Any, quality: str, status: int | None, now: float) -> bool:
        last = self._last.get(point.name)
        if last is None:
            return True
        lvalue, lquality, lstatus, lt = last
        if (quality, status) != (lquality, lstatus):
            return True
        if quality != "GOOD":
            return now - lt >= self.bad_repeat
        if self.mode == "always":
            return True
        if now - lt >= self.heartbeat:
            return True
        if isinstance(value, (bool, str)) or isinstance(lvalue, (bool, str)) or value is None or lvalue is None:
            return value != lvalue
        if value != value or lvalue != lvalue:  # NaN: report a change into or out of NaN once
            return (value != value) != (lvalue != lvalue)
        if point.deadband > 0:
            return abs(value - lvalue) > point.deadband
        return value != lvalue

    def sent(self, point: PointSpec, value: Any, quality: str, status: int | None, now: float) -> None:
        self._last[point.name] = (value, quality, status, now)


__all__ = ["Block", "MAX_BITS", "MAX_REGISTERS", "PointSpec", "ReportFilter", "TABLES", "check_overlaps", "parse_address", "plan_blocks"]
