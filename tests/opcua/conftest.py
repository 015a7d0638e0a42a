"""OPC-UA test rig: a real spool + writer, a SourceContext, the in-process plant simulator."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from edge.configtypes import build
from edge.encode import decode
from edge.sources.base import SourceContext, SourceStatus
from edge.sources.opcua import Config, Source
from edge.spool import Spool, SpoolReader
from edge.writer import SpoolWriter


class Rig:
    """Sources spooling into one real SQLite file under tmp_path."""

    def __init__(self, tmp_path: Path, *, max_bytes: int = 256 * 1024**2, when_full: str = "block"):
        self.tmp_path = tmp_path
        self.path = tmp_path / "spool.db"
        self.spool = Spool.open(self.path, appliance_id="test-edge", max_bytes=max_bytes, when_full=when_full,
                                min_free_bytes=0)
        self.writer = SpoolWriter(self.spool)
        self.statuses: dict[str, SourceStatus] = {}

    def context(self, name: str) -> SourceContext:
        status = SourceStatus(name, "opcua", self.writer.put_state, min_interval=0.0)
        self.statuses[name] = status
        return SourceContext(
            appliance_id="test-edge", data_dir=self.tmp_path / "data", emit=self.writer.emit,
            submit=self.writer.submit, quarantine=self.writer.quarantine,
            wait_for_space=self.writer.wait_for_space_async, status=status, log=logging.getLogger(f"test.{name}"),
        )

    def source(self, endpoint: str, groups: list[dict], **options: Any) -> Source:
        name = options.pop("name", "plc")
        raw = {"name": name, "type": "opcua", "endpoint": endpoint, "groups": groups, "timeout": 3,
               "watchdog_interval": 3, "reconnect_initial": 0.2, "reconnect_max": 1, **options}
        return Source(build(Config, raw, "sources[0]"), self.context(name))

    def readings(self) -> list[Any]:
        reader = SpoolReader(self.path)
        try:
            return [decode(body) for _, body in reader.peek(0, 10_000_000)]
        finally:
            reader._conn.close()

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
def rig(tmp_path: Path):
    r = Rig(tmp_path)
    try:
        yield r
    finally:
        r.close()





def by_point(readings: list[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for r in readings:
        out.setdefault(r.point, []).append(r)
    return out


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
