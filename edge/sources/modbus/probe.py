"""``edge doctor --sources`` for a Modbus TCP source: reach the device, read one block per unit id and decode it.

Modbus TCP has no security or login, so the checks are ``reach`` and one ``read <device>``
per configured unit id: the first planned block of that device, read on a connection of its
own and decoded as the collector would. An exception response names the addresses it was
about and what to change in the register map.
"""

from __future__ import annotations

import asyncio

from edge.control.probing import Check, Checks, reach
from edge.sources.modbus.codes import STATUS_CONNECTION_CLOSED, STATUS_NO_CONNECTION, STATUS_TIMEOUT
from edge.sources.modbus.collector import decode_point
from edge.sources.modbus.connection import Connection, ReadFailed
from edge.sources.modbus.config import Config
from edge.sources.modbus.plan import TABLES, Block

_MODICON = {"coils": 0, "discrete_inputs": 1, "input_registers": 3, "holding_registers": 4}
SHOWN_POINTS = 3


def modicon(table: str, address: int) -> str:
    """The Modicon number of a PDU address (holding register 9 -> 40010), as device manuals write it."""
    number = address + 1
    return f"{_MODICON[table]}{number:04d}" if number <= 9999 else f"{_MODICON[table]}{number:05d}"


def span(block: Block) -> str:
    first, last = modicon(block.table, block.start), modicon(block.table, block.start + block.count - 1)
    return f"{block.table} {first}" + (f"..{last}" if block.count > 1 else "")


def exception_hint(code: int, block: Block, cfg: Config) -> str:
    """One line for a Modbus exception response (codes 1..11) to a block read."""
    fc = TABLES[block.table][0]
    first = modicon(block.table, block.start)
    names = ", ".join(p.name for p in block.points[:SHOWN_POINTS])
    if code == 1:
        return f"the device does not serve function {fc} ({block.table}): check the table of {names}"
    if code == 2:
        return (f"device answered illegal data address for {first} (block of {block.count}: {names}): check the "
                f"register map (address_base is {cfg.address_base}: an off-by-one?) and max_gap")
    if code == 3:
        return f"the device refused a read of {block.count} at {first}: lower max_block_registers / max_block_bits"
    if code in (5, 6):
        return "the device is busy: run the doctor again; if it persists, poll it less often"
    if code in (10, 11):
        return (f"the gateway cannot reach unit id {block.device_id}: check device_id and the serial line "
                "behind the gateway")
    return f"the device reported failure code {code}: check the device's own diagnostics"


def describe_values(block: Block, values: list) -> str:
    shown = []
    for p in block.points[:SHOWN_POINTS]:
        value = decode_point(p, values, block.start)
        shown.append(f"{p.name}={value!r}" + (f" {p.unit}" if p.unit else ""))
    more = len(block.points) - SHOWN_POINTS
    return ", ".join(shown) + (f" (+{more} more)" if more > 0 else "")


async def read_block(checks: Checks, conn: Connection, block: Block, cfg: Config, name: str, timeout: float) -> bool:
    where = f"device {block.device_id} {span(block)}"
    try:
        # The doctor's own bound too: the configured timeout x retries may be far longer.
        async with asyncio.timeout(timeout * 2):
            values = await conn.read(block)
    except TimeoutError:
        return checks.fail(name, f"{where}: no answer within {timeout * 2:g}s",
                           f"no answer from unit id {block.device_id}: check device_id and that {cfg.host}:{cfg.port} "
                           "speaks Modbus TCP")
    except ReadFailed as exc:
        if exc.code == STATUS_TIMEOUT:
            return checks.fail(name, f"{where}: {exc}",
                               f"no answer from unit id {block.device_id}: check device_id (a gateway drops unknown "
                               f"ids), and timeout ({cfg.timeout:g}s)")
        if exc.code in (STATUS_NO_CONNECTION, STATUS_CONNECTION_CLOSED):
            return checks.fail(name, f"{where}: {exc}",
                               f"the device closed the connection: it may accept only {cfg.connections} connection(s) "
                               "and the appliance holds them; stop the appliance or raise the device's limit")
        if exc.code < 1000:
            return checks.fail(name, f"{where}: {exc}", exception_hint(exc.code, block, cfg))
        return checks.fail(name, f"{where}: {exc}", "the answer did not fit the request: check host/port (is it Modbus TCP?)")
    try:
        shown = describe_values(block, values)
    except ValueError as exc:  # decode.DecodeError included
        return checks.fail(name, f"{where}: read, but decoding failed: {exc}",
                           "check the type, order and length of the points in this block")
    return checks.passed(name, f"{where}: {shown}")


async def probe(cfg: Config, timeout: float, *, appliance_id: str = "", data_dir: str = ".") -> list[Check]:
    checks = Checks(cfg.name)
    first_blocks: dict[int, Block] = {}
    for b in cfg.blocks:
        first_blocks.setdefault(b.device_id, b)
    reads = [f"read device {d}" for d in first_blocks]
    if not await reach(checks, cfg.host, cfg.port, timeout, f"{cfg.name}.host/port"):
        checks.skip(reads, "the device is not reachable")
        return checks.rows
    conn = Connection(cfg, 0)  # a connection of its own, with the collector's timeouts and error reading
    try:
        for name, block in zip(reads, first_blocks.values()):
            await read_block(checks, conn, block, cfg, name, timeout)
    finally:
        conn.close()
    return checks.rows


__all__ = ["exception_hint", "modicon", "probe"]
