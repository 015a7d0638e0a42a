"""Scenarios the interop tests run the same way against every foreign OPC-UA server."""

from __future__ import annotations

from typing import Any

from simulators.foreign.checks import every_type_has, landed
from simulators.foreign.process import ForeignServer
from simulators.foreign.values import TYPES
from simulators.kit.aio import running, wait_until


async def kill_and_restart(server: ForeignServer, rig: Any, group: dict) -> Any:
    """Our collector (``rig.source``, a tests/opcua Rig) running; the server killed (SIGKILL) and
    started again on its port; returns the source once every type has a value from the new process."""
    server.start()
    src = rig.source(server.endpoint, [group])
    status = rig.statuses["plc"]
    async with running(src):
        await wait_until(lambda: status.data["state"] == "running" and every_type_has(rig.readings(), 3), what="running")
        server.kill()
        await wait_until(lambda: status.data["state"] != "running", timeout=15, what="the kill noticed")
        last_before = max(server.ticks())
        server.start()
        await wait_until(lambda: src.stats["sessions"] == 2 and status.data["state"] == "running", timeout=20,
                         what="reconnected")
        await wait_until(lambda: all(max(landed(rig.readings(), server.ticks())[t]) > last_before for t in TYPES),
                         what="new values of every type after the restart")
    return src


async def collect(server: ForeignServer, rig: Any, group: dict, n: int = 10) -> Any:
    """Our collector on ``server`` until every type has ``n`` values; returns the source."""
    src = rig.source(server.endpoint, [group])
    async with running(src):
        await wait_until(lambda: every_type_has(rig.readings(), n), what=f"{n} values of every type")
    return src
