"""A reader polling during heavy writes holds no long snapshot: the WAL stays bounded."""

import threading
import time

from edge.spool import SpoolReader
from edge.writer import SpoolWriter

from .conftest import items


def test_wal_bounded_while_a_reader_polls(open_spool, spool_path):
    spool = open_spool()
    writer = SpoolWriter(spool)
    batch = items(1000, pad=100)
    stop = threading.Event()
    polls = []
    wal_sizes = []

    def poll():
        with SpoolReader(spool_path) as r:
            while not stop.is_set():
                st = r.stats()
                r.peek(st["delivered_seq"], 500)
                polls.append(st["next_seq"])
                wal_sizes.append(st["wal_bytes"])

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        written = 0
        while written < 400_000 and time.monotonic() < deadline:  # ~60 MB through the WAL
            r = writer.submit(batch).result(10)
            written += len(batch)
            writer.ack(r.last_seq - 5000) if r.last_seq > 5000 else None
    finally:
        stop.set()
        reader.join(10)
        writer.close()
    assert len(polls) > 20 and polls == sorted(polls)
    written_mb = written * len(batch[0][1]) / 1e6
    assert written_mb > 25  # enough traffic that a pinned snapshot would push the WAL far past the bound
    # A reader pinning a snapshot makes the WAL hold everything written (~1.3x the data);
    # short read transactions let checkpoints recycle it (about 4 MB here).
    assert max(wal_sizes) < 16e6, (max(wal_sizes), written_mb)
