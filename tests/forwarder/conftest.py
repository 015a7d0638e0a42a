"""Forwarder test helpers: a real spool + writer, the real SDK, the emulator subprocess."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edge.config import ZerobusConfig
from edge.configtypes import ByteSize, Duration, Secret
from edge.encode import encode_reading
from edge.forward import Forwarder
from edge.spool import Spool
from edge.writer import SpoolWriter
from simulators.kit.wait import wait_until
from tests.support.fixtures import emulator  # noqa: F401

APP = "fwd-test"
BASE_TS = 1_700_000_000_000_000


def body(i: int, point: str | None = None) -> bytes:
    return encode_reading(source="t", protocol="synthetic", point=point or f"line1/m{i % 7}/temp",
                          value=float(i), collected_ts=BASE_TS + i, unit="C")


def items(n: int, start: int = 0, bad: set[int] = frozenset()) -> list[tuple[int, bytes]]:
    return [(BASE_TS + start + i, body(start + i, "bad/x" if start + i in bad else None)) for i in range(n)]


def wait_for(pred, timeout: float = 20.0, what: str = "condition"):
    """The kit's waiter with the forwarder tests' defaults (returns what ``pred`` returned)."""
    return wait_until(pred, timeout, what, every=0.01)


def make_cfg(emu, **kw) -> ZerobusConfig:
    base = dict(
        endpoint=emu.grpc_endpoint, workspace_url=emu.workspace_url, table=emu.table,
        client_id=emu.client_id, client_secret=Secret(emu.client_secret),
        batch_max_records=200, batch_max_bytes=ByteSize(1 << 20), max_inflight_batches=4,
        ack_timeout=Duration(3), reconnect_initial=Duration(0.05), reconnect_max=Duration(0.3),
        blocked_retry=Duration(0.5),
    )
    base.update(kw)
    base["client_secret"] = Secret(base["client_secret"])  # as edge.config builds it
    return ZerobusConfig(**base)


class Rig:
    """A spool writer and (optionally) a running forwarder on it."""

    def __init__(self, tmp: Path, emu, max_bytes: int = 256 << 20, when_full: str = "block"):
        self.path = tmp / "spool.db"
        self.emu = emu
        self.spool = Spool.open(self.path, appliance_id=APP, max_bytes=max_bytes, when_full=when_full)
        self.writer = SpoolWriter(self.spool)
        self.fwd: Forwarder | None = None

    def append(self, n: int, start: int | None = None, bad: set[int] = frozenset()):
        start = self.next_index() if start is None else start
        return self.writer.submit(items(n, start, bad)).result(30)

    def next_index(self) -> int:
        return self.writer.call(lambda s: s.next_seq).result(10) - 1

    def start(self, open_streams: int | None = None, **kw) -> Forwarder:
        """``open_streams``: open that many streams from the start (the pace opens more only when quota-bound)."""
        self.fwd = Forwarder(make_cfg(self.emu, **kw), appliance_id=APP, spool_path=str(self.path), writer=self.writer)
        if open_streams is not None:
            self.fwd.pace.streams = open_streams
        self.writer.on_commit = self.fwd.notify  # as edge/runner.py wires them
        self.fwd.start()
        return self.fwd

    def watermark(self) -> int:
        return self.writer.call(lambda s: s.watermark()).result(10)

    def wait_delivered(self, seq: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.watermark() < seq:
            if time.monotonic() > deadline:
                raise AssertionError(f"watermark {self.watermark()} did not reach {seq}; state {self.fwd and self.fwd.state()}")
            time.sleep(0.02)

    def wait_state(self, state: str, timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            st = self.fwd.state()
            if st["state"] == state:
                return st
            if time.monotonic() > deadline:
                raise AssertionError(f"state {state!r} not reached: {st}")
            time.sleep(0.02)

    def ledger(self) -> dict:
        return self.emu.table_stats()["appliances"].get(APP, {})

    def close(self) -> None:
        if self.fwd is not None:
            assert self.fwd.stop(10), "forwarder did not stop"
        self.writer.close()


@pytest.fixture
def rig(tmp_path, emulator):  # noqa: F811
    r = Rig(tmp_path, emulator)
    try:
        yield r
    finally:
        r.close()
