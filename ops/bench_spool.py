"""Spool benchmark: figures and ratios against a baseline measured in the same run.

    PYTHONPATH=. .venv/bin/python ops/bench_spool.py            # moderate sizes
    PYTHONPATH=. .venv/bin/python ops/bench_spool.py --rows 200000 --backlog 1000000

Not a test: nothing is asserted. Rows are ~100-byte bodies, 1,000 per transaction.
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.spool import Spool  # noqa: E402
from edge.writer import SpoolWriter  # noqa: E402

BODY = bytes(range(100))
TS = 1_700_000_000_000_000


def batches(rows: int, per_tx: int) -> list[list[tuple[int, bytes]]]:
    one = [(TS + i, BODY) for i in range(per_tx)]
    return [one] * (rows // per_tx)


def raw_executemany(path: Path, rows: int, per_tx: int) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, payload BLOB)")
    payload = [(BODY,)] * per_tx
    t0 = time.perf_counter()
    for _ in range(rows // per_tx):
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO t(payload) VALUES (?)", payload)
        conn.execute("COMMIT")
    dt = time.perf_counter() - t0
    conn.close()
    return rows / dt


def spool_append(path: Path, rows: int, per_tx: int) -> float:
    spool = Spool.open(path, appliance_id="bench", max_bytes=1 << 40, min_free_bytes=0)
    work = batches(rows, per_tx)
    t0 = time.perf_counter()
    for b in work:
        spool.append(b)
    dt = time.perf_counter() - t0
    spool.close()
    return rows / dt


def writer_threads(path: Path, rows: int, threads: int, per_call: int) -> tuple[float, float]:
    spool = Spool.open(path, appliance_id="bench", max_bytes=1 << 40, min_free_bytes=0)
    writer = SpoolWriter(spool)
    per_thread = rows // threads
    batch = [(TS + i, BODY) for i in range(per_call)]

    def run() -> None:
        for _ in range(per_thread // per_call):
            writer.submit(batch).result()

    ts = [threading.Thread(target=run) for _ in range(threads)]
    c0 = spool.commits
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    dt = time.perf_counter() - t0
    commits = spool.commits - c0
    writer.close()
    return (per_thread // per_call) * per_call * threads / dt, (per_thread // per_call) * threads / max(1, commits)


def drain(path: Path, per_peek: int) -> float:
    spool = Spool.open(path, appliance_id="bench", max_bytes=1 << 40, min_free_bytes=0)
    n = 0
    t0 = time.perf_counter()
    after = spool.watermark()
    while True:
        rows = spool.peek(after, per_peek)
        if not rows:
            break
        after = rows[-1][0]
        spool.ack(after)
        n += len(rows)
    dt = time.perf_counter() - t0
    spool.close()
    return n / dt


_BACKLOG_CHILD = r"""
import sqlite3, sys, time
sys.path.insert(0, sys.argv[1])
from edge.spool import Spool
path, n, mode = sys.argv[2], int(sys.argv[3]), sys.argv[4]
body = bytes(range(100))
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 // (1 << 20)
if mode == "build":
    spool = Spool.open(path, appliance_id="bench", max_bytes=1 << 40, min_free_bytes=0)
    batch = [(1_700_000_000_000_000, body)] * 10_000
    while spool.next_seq <= n:
        spool.append(batch)
    spool.close()
elif mode == "quick_check":
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    t0 = time.perf_counter()
    res = conn.execute("PRAGMA quick_check").fetchone()[0]
    print(f"full PRAGMA quick_check {time.perf_counter() - t0:.2f} s ({res})")
else:
    # Open as the appliance does: full check when small, light check + background check when big.
    limit = {"default": None, "light": 0}[mode]
    kw = {} if limit is None else {"full_check_max_bytes": limit}
    t0 = time.perf_counter()
    spool = Spool.open(path, appliance_id="bench", max_bytes=1 << 40, min_free_bytes=0, **kw)
    opened = time.perf_counter() - t0
    samples = [rss()]
    after = spool.watermark()
    batch = [(1_700_000_000_000_000, body)] * 1000
    for i in range(300):
        spool.append(batch)
        rows = spool.peek(after, 1000)
        after = rows[-1][0]
        if i % 30 == 0:
            samples.append(rss())
    spool.stats()
    samples.append(rss())
    bg = "none (checked at open)" if spool._background is None else "running"
    spool.wait_background_check(timeout=900)
    state = spool.states("integrity")
    if state:
        bg = state[0]["value"]
    samples.append(rss())
    print(f"open[{mode}] {opened:.3f} s; RSS MB while appending+peeking {samples}; background check {bg}")
    spool.close()
"""


def backlog(path: Path, n: int) -> list[str]:
    root = str(Path(__file__).resolve().parent.parent)

    def child(mode: str) -> str:
        out = subprocess.run([sys.executable, "-c", _BACKLOG_CHILD, root, str(path), str(n), mode], check=True,
                             capture_output=True, text=True)
        return out.stdout.strip()

    child("build")
    return [child(m) for m in ("default", "light", "quick_check")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=300_000, help="rows per throughput measurement")
    ap.add_argument("--per-tx", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3, help="alternating raw/spool rounds (median reported)")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--backlog", type=int, default=2_000_000, help="readings in the backlog spool (0 to skip)")
    ap.add_argument("--dir", default=None, help="where to put the files (default: a temp dir)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        tmp = Path(d)
        raw, spool = [], []
        for r in range(args.rounds):
            raw.append(raw_executemany(tmp / f"raw{r}.db", args.rows, args.per_tx))
            spool.append(spool_append(tmp / f"spool{r}.db", args.rows, args.per_tx))
        raw_m, spool_m = statistics.median(raw), statistics.median(spool)
        w_rate, per_commit = writer_threads(tmp / "writer.db", args.rows, args.threads, 100)
        d_rate = drain(tmp / "spool0.db", 1000)
        print(f"{'measure':48} {'rows/s':>12} {'ratio':>8}")
        print(f"{'raw executemany, WAL, synchronous=FULL':48} {raw_m:12,.0f} {1.0:8.2f}")
        print(f"{'Spool.append':48} {spool_m:12,.0f} {spool_m / raw_m:8.2f}")
        print(f"{f'SpoolWriter.submit, {args.threads} threads x 100 rows':48} {w_rate:12,.0f} "
              f"{w_rate / raw_m:8.2f}   ({per_commit:.1f} submits per commit)")
        print(f"{'drain: peek 1000 + ack':48} {d_rate:12,.0f}")
        print(f"rounds raw={[round(x) for x in raw]} spool={[round(x) for x in spool]}")
        if args.backlog:
            t0 = time.perf_counter()
            lines = backlog(tmp / "backlog.db", args.backlog)
            size = os.path.getsize(tmp / "backlog.db")
            print(f"backlog of {args.backlog:,} readings ({size / 1e6:,.0f} MB; built and measured in "
                  f"{time.perf_counter() - t0:.0f} s):")
            for line in lines:
                print("  " + line)
    print(f"bench process max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
