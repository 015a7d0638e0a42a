"""Child for test_crash.py: appends through SpoolWriter until killed, reporting each commit.

Lines on stdout (flushed per line): ``A <first> <last> <tag>`` after an append committed,
``K <upto>`` after an ack committed. The parent SIGKILLs this process at a random moment.
"""

import sys
import threading

from edge.encode import encode_reading
from edge.spool import Spool
from edge.writer import SpoolWriter

path, run_id = sys.argv[1], sys.argv[2]
spool = Spool.open(path, appliance_id="crash", max_bytes=1 << 30, min_free_bytes=0)
writer = SpoolWriter(spool, sample_interval_s=0.2)
out_lock = threading.Lock()


def say(line: str) -> None:
    with out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def appender(worker: int) -> None:
    n = 0
    while True:
        size = 1 + (n * 37 + worker) % 300
        tag = f"{run_id}.{worker}.{n}"
        batch = [(1_700_000_000_000_000 + i, encode_reading(source=tag, protocol="synthetic", point=str(i), value=i))
                 for i in range(size)]
        r = writer.submit(batch).result()
        say(f"A {r.first_seq} {r.last_seq} {tag}")
        n += 1


def acker() -> None:
    while True:
        threading.Event().wait(0.05)
        upto = max(spool.watermark(), spool.next_seq - 2000)
        if upto > spool.watermark():
            writer.ack(upto).result()
            say(f"K {upto}")


for w in range(3):
    threading.Thread(target=appender, args=(w,), daemon=True).start()
threading.Thread(target=acker, daemon=True).start()
threading.Event().wait(60)
