"""Modbus test rig: a real spool + writer, a SourceContext, and the plant-driven pymodbus simulator."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from edge.encode import decode
from edge.sources.base import SourceContext, SourceStatus
from edge.sources.modbus.collector import Config, Source
from edge.spool import Spool, SpoolReader
from edge.writer import SpoolWriter
from simulators.modbus.server import PlantModbusServer, parse_map


class Rig:
    """One source against one simulator, spooling into a real SQLite file."""

    def __init__(self, tmp_path: Path, *, max_bytes: int = 64 * 1024**2, when_full: str = "block"):
        self.path = tmp_path / "spool.db"
        self.spool = Spool.open(self.path, appliance_id="test-edge", max_bytes=max_bytes, when_full=when_full,
                                min_free_bytes=0)
        self.writer = SpoolWriter(self.spool)
        self.tmp_path = tmp_path

    def context(self, name: str) -> SourceContext:
        status = SourceStatus(name, "modbus", self.writer.put_state, min_interval=0.0)
        return SourceContext(
            appliance_id="test-edge", data_dir=self.tmp_path, emit=self.writer.emit, submit=self.writer.submit,
            quarantine=self.writer.quarantine, wait_for_space=self.writer.wait_for_space_async, status=status,
            log=logging.getLogger(f"test.{name}"),
        )

    def rows(self) -> list[tuple[int, bytes]]:
        """Undelivered (seq, body) rows, through a read-only connection like the forwarder's."""
        reader = SpoolReader(self.path)
        try:
            return reader.peek(0, 1_000_000)
        finally:
            reader.close()

    def readings(self) -> list[Any]:
        return [decode(body) for _, body in self.rows()]

    def close(self) -> None:
        self.writer.close()


def source_config(devices: list[dict], port: int, **options: Any) -> Config:
    raw = {"name": options.pop("name", "plc"), "type": "modbus", "host": "127.0.0.1", "port": port,
           "devices": devices, "timeout": 0.3, "reconnect_initial": 0.05, "reconnect_max": 0.2, **options}
    from edge.configtypes import build

    return build(Config, raw, "sources[0]")


async def start_sim(devices: list[dict], plant=None, engine: str = "pymodbus", **map_options: Any) -> PlantModbusServer:
    cfg, _ = parse_map({"devices": devices, **map_options})
    sim = PlantModbusServer(cfg, plant, engine=engine)
    await sim.start()
    return sim
