"""The per-worker sample cache: only newer samples are read, and a replaced spool starts a new history."""

from __future__ import annotations

import time

from edge.admin import reading
from edge.spool import Spool

from tests.admin.conftest import items


def test_sample_cache_appends_new_samples_and_forgets_a_replaced_spool(tmp_path):
    path = tmp_path / "spool.db"
    sp = Spool.open(path, appliance_id="a", max_bytes=64 * 1024**2)
    t0 = time.time() - 100
    for i in range(5):
        sp.append(items(10))
        sp.sample(now=t0 + i)
    first = reading.read(str(path), since_ts=t0 - 1)
    assert [s["in"] for s in first.samples] == [10, 20, 30, 40, 50]
    sp.append(items(10))
    sp.sample(now=t0 + 10)
    second = reading.read(str(path), since_ts=t0 - 1)
    assert [s["in"] for s in second.samples] == [10, 20, 30, 40, 50, 60]
    assert [s["in"] for s in reading.read(str(path), since_ts=t0 + 2.5).samples] == [40, 50, 60]
    # A wider window than the cache covers reads the spool again.
    assert [s["in"] for s in reading.read(str(path), since_ts=t0 - 1).samples] == [10, 20, 30, 40, 50, 60]
    sp.close()

    for suffix in ("", "-wal", "-shm", ".seq"):
        (tmp_path / f"spool.db{suffix}").unlink(missing_ok=True)
    sp = Spool.open(path, appliance_id="a", max_bytes=64 * 1024**2)
    sp.append(items(3))
    sp.sample(now=t0 + 20)
    sp.close()
    assert [s["in"] for s in reading.read(str(path), since_ts=t0 - 1).samples] == [3]
