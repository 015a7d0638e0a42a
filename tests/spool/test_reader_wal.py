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
        deadline = time.monotonic() + 20
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
    total_mb = written * (len(batch[0][1]) + 16) / 1e6
    # Without checkpoints recycling it, the WAL would hold everything written (tens of MB).
    assert max(wal_sizes) < min(16e6, total_mb * 1e6 / 3), (max(wal_sizes), total_mb)
