"""What to read and what to send: pure planning for the Modbus collector.

- ``parse_address``: the address notations we accept (see modbus/README.md);
- ``check_overlaps``: two points sharing a register is a map error, named by field;
- ``plan_blocks``: contiguous block reads (<= 125 registers / 2000 bits per request,
  the protocol's limits) per device, table and poll interval;
- ``ReadPlan``: what each block has taught us: when a read fails on a register the
  device cannot serve, the block is bisected into sub-blocks, the good ones are read
  directly from then on and the bad register is re-probed every ``reprobe`` seconds;
- ``ReportFilter``: report-by-exception (change / deadband / heartbeat) and the
  repeat limit for BAD readings.

Addresses inside this module are always protocol (PDU) addresses, 0..65535.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from edge.configtypes import ConfigError
from edge.sources.modbus.codes import REQUEST_CODES, STATUS_TIMEOUT

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


def sub_block(block: Block, points: Sequence[PointSpec]) -> Block:
    """The read that covers just ``points`` (consecutive points of ``block``; holes between them are read too)."""
    start = points[0].address
    return Block(block.device_id, block.table, start, max(p.end for p in points) - start, block.interval, tuple(points))


def halves(block: Block) -> tuple[Block, Block] | None:
    """Split a block's points into two reads; None when it covers one point (or bits of one register).

    Points that share a register (bits of it) stay together: a leaf is one register span.
    """
    units: list[list[PointSpec]] = []
    for p in block.points:
        if units and units[-1][0].address == p.address:
            units[-1].append(p)
        else:
            units.append([p])
    if len(units) < 2:
        return None
    mid = len(units) // 2
    left = [p for u in units[:mid] for p in u]
    right = [p for u in units[mid:] for p in u]
    return sub_block(block, left), sub_block(block, right)


def isolatable(code: int, device_answered: bool) -> bool:
    """Is a failed read worth bisecting: the failure is about some register, not about the device?

    An exception 2/3/4/8 or a connection the device closed on this request: yes. A timeout only
    when the same device answered another read of the cycle (else the device is gone, not a register).
    """
    return code in REQUEST_CODES or (code == STATUS_TIMEOUT and device_answered)


GOOD_PART = "good"  # read it every cycle
SPLIT_PART = "split"  # half of a failed read, not read on its own yet (bisect pending)
BAD_PART = "bad"  # one register span that failed on its own; read again at ``retry_at``


@dataclass(eq=False)
class Segment:
    """One read of a block's learned plan; ``code`` is the failure that made it split or bad."""

    block: Block
    state: str = GOOD_PART
    code: int | None = None
    retry_at: float = 0.0


class ReadPlan:
    """The reads that cover each configured block, learned from failures (pure: the caller does the I/O).

    A block starts as one read. When ``record`` is told that a read failed in an
    ``isolatable`` way, the read is replaced by its two ``halves`` (state ``split``), which
    the caller reads next (``pending``), within its own budget of reads per cycle; a
    failing half is split again, down to one point's register span, which becomes
    ``bad``. A half that reads fine becomes ``good`` and is read directly every cycle
    (``due``), so the bad register no longer spoils (or, if the device drops the
    connection on it, disconnects) the rest. A bad part is read again once every
    ``reprobe`` seconds; once no part is bad any more the block is one read again.
    """

    def __init__(self, blocks: Iterable[Block], reprobe: float):
        self.reprobe = reprobe
        # Keyed by id(): a Block hashes all its points, and the configured blocks live as long as the plan.
        self._parts: dict[int, list[Segment]] = {id(b): [Segment(b)] for b in blocks}
        self._whole: dict[int, Block] = {id(b): b for b in blocks}
        self._rejoin: set[int] = set()  # blocks where a bad part read fine again
        self.changes = 0  # counts changes of the plan's parts and their states
        self.splitting = 0  # parts waiting to be read on their own, over all blocks

    def parts(self, block: Block) -> list[Segment]:
        """Every part of the block in address order: what its points are reported from."""
        return self._parts[id(block)]

    def due(self, block: Block, now: float) -> list[Segment]:
        """The reads of a normal cycle: the good parts, and the bad ones whose re-probe time came."""
        parts = self._tidy(block)
        return [s for s in parts if s.state == GOOD_PART or (s.state == BAD_PART and now >= s.retry_at)]

    def pending(self, block: Block) -> list[Segment]:
        """Halves of failed reads still to be read on their own (the bisect's frontier)."""
        return [s for s in self._parts[id(block)] if s.state == SPLIT_PART]

    def bad(self, block: Block) -> list[Segment]:
        return [s for s in self._parts[id(block)] if s.state == BAD_PART]

    def record(self, block: Block, seg: Segment, code: int | None, isolate: bool, now: float,
               conclusive: bool = True) -> list[Segment]:
        """Learn from one read of ``seg`` (``code`` None: it read fine); returns new parts to read (halves).

        ``conclusive=False``: nothing showed yet that the device serves other registers (a close or a
        timeout while it answered no read of the cycle). The read is still split, to find out, but a
        part of one point is not declared bad on that: it stays pending, to be read again next cycle.
        """
        if code is None:
            if seg.state == BAD_PART:
                self._rejoin.add(id(block))
            if seg.state != GOOD_PART:
                self._moved(seg, GOOD_PART)
            seg.code = None
            return []
        if not isolate:  # the device or the moment is to blame, not a register: keep the plan
            if seg.state == BAD_PART:
                seg.code, seg.retry_at = code, now + self.reprobe
            return []
        split = halves(seg.block)
        if split is None and not conclusive and seg.state != BAD_PART:
            if seg.state != SPLIT_PART:
                self._moved(seg, SPLIT_PART)
                self.splitting += 1
            seg.code = code
            return []
        if split is None:
            self._moved(seg, BAD_PART)
            seg.code, seg.retry_at = code, now + self.reprobe
            return []
        parts = self._parts[id(block)]
        self._moved(seg, None)
        new = [Segment(b, SPLIT_PART, code) for b in split]
        self.splitting += len(new)
        i = parts.index(seg)
        parts[i:i + 1] = new
        return new

    def _moved(self, seg: Segment, state: str | None) -> None:
        """Count a part's change of state (None: it is replaced by its halves)."""
        self.changes += 1
        if seg.state == SPLIT_PART:
            self.splitting -= 1
        if state is not None:
            seg.state = state

    def _tidy(self, block: Block) -> list[Segment]:
        """Between cycles: one read again once a bad part recovered and none is left; else join touching good parts.

        A bisect that ends with every point good found the failure in a hole between points
        (``max_gap``): the parts stay apart, as reading the whole block would fail again.
        """
        parts = self._parts[id(block)]
        if len(parts) == 1:
            return parts
        if id(block) in self._rejoin and all(s.state == GOOD_PART for s in parts):
            self._rejoin.discard(id(block))
            parts[:] = [Segment(self._whole[id(block)])]
            self.changes += 1
            return parts
        out: list[Segment] = []
        for s in parts:
            prev = out[-1] if out else None
            # Only parts that touch: a hole between them may hold the register that failed.
            if prev and prev.state == s.state == GOOD_PART and prev.block.start + prev.block.count == s.block.start:
                out[-1] = Segment(sub_block(block, prev.block.points + s.block.points))
                self.changes += 1
            else:
                out.append(s)
        parts[:] = out
        return parts


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


__all__ = [
    "BAD_PART", "Block", "GOOD_PART", "MAX_BITS", "MAX_REGISTERS", "PointSpec", "ReadPlan", "ReportFilter", "SPLIT_PART",
    "Segment", "TABLES", "check_overlaps", "halves", "isolatable", "parse_address", "plan_blocks", "sub_block",
]
