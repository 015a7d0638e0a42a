"""An idle forwarder sleeps until the writer commits new rows; it does not poll the spool."""

from __future__ import annotations

import time

from edge.forward import Forwarder, loop
from edge.spool import SpoolReader
from tests.forwarder.conftest import APP, make_cfg


class CountingReader:
    """The real reader; counts the peeks (each one is a query on the spool)."""

    def __init__(self, path):
        self._r = SpoolReader(path)
        self.peeks = 0

    def peek(self, *a, **kw):
        self.peeks += 1
        return self._r.peek(*a, **kw)

    def __getattr__(self, name):
        return getattr(self._r, name)


def test_idle_forwarder_does_not_poll_and_wakes_on_commit(rig, monkeypatch):
    # With the safety-net poll pushed out of reach, only the writer's on_commit can wake it.
    monkeypatch.setattr(loop, "IDLE_POLL", 3600.0)
    res = rig.append(100)
    reader = CountingReader(rig.path)
    rig.fwd = Forwarder(make_cfg(rig.emu), appliance_id=APP, spool_path=str(rig.path), writer=rig.writer, reader=reader)
    rig.writer.on_commit = rig.fwd.notify
    rig.fwd.start()
    rig.wait_delivered(res.last_seq)
    rig.wait_state("idle")
    before = reader.peeks
    time.sleep(1.0)  # an observation window, not a wait: nothing may happen in it
    assert reader.peeks - before <= 1, f"{reader.peeks - before} spool reads in 1 s while idle"
    more = rig.append(50)
    rig.wait_delivered(more.last_seq)
    assert rig.ledger()["max_seq"] == more.last_seq


def test_writer_calls_on_commit_after_rows_are_committed(rig):
    calls = []
    rig.writer.on_commit = lambda: calls.append(rig.watermark)  # called on the writer thread
    rig.append(10)
    assert len(calls) == 1
    rig.writer.put_state("forwarder", "x", {}).result(10)
    assert len(calls) == 1  # no new rows, no wake-up
