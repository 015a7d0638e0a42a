#!/usr/bin/env python3
"""Benchmark: Ignition-style batches over keep-alive HTTP into the durable spool.

Starts `edge run --no-forward` with an http source on a fresh spool, then
client processes POST batches of --batch events (the gateway scripts' JSON)
over keep-alive connections for --seconds. Every 200 stands for a committed
(synchronous=FULL) spool transaction. Baseline, same run and same clients: a
bare stdlib HTTP server that reads and parses each body and answers 200
without mapping or committing anything - the cost of HTTP + JSON alone.

    .venv/bin/python ops/bench_ignition.py [--seconds 10] [--clients 4] [--batch 500]

Target: >= 50,000 events/s.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from simulators.kit.ports import free_port  # noqa: E402
TOKEN = "bench-token-0123456789abcdef"


def make_batch(client: int, n: int, start: int) -> bytes:
    now = int(time.time() * 1000)
    return json.dumps([
        {"tagPath": f"Line{client}/Machine{i % 20}/Tag{i % 50}", "tagProvider": "default", "value": (start + i) * 0.5,
         "quality": "Good", "qualityCode": 192, "timestamp": now, "dataType": "float"}
        for i in range(n)
    ]).encode()


def client(port: int, seconds: float, batch: int, idx: int, out: mp.Queue) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    bodies = [make_batch(idx, batch, k * batch) for k in range(8)]
    sent = failed = 0
    end = time.monotonic() + seconds
    k = 0
    while time.monotonic() < end:
        conn.request("POST", "/system/zerobus/ingest/batch", body=bodies[k % 8], headers=headers)
        resp = conn.getresponse()
        resp.read()
        k += 1
        if resp.status == 200:
            sent += batch
        else:
            failed += 1
    conn.close()
    out.put((sent, failed))


def drive(port: int, seconds: float, clients: int, batch: int) -> tuple[float, int]:
    q: mp.Queue = mp.Queue()
    procs = [mp.Process(target=client, args=(port, seconds, batch, i, q)) for i in range(clients)]
    t0 = time.monotonic()
    for p in procs:
        p.start()
    results = [q.get(timeout=seconds + 60) for _ in procs]
    for p in procs:
        p.join()
    elapsed = time.monotonic() - t0
    return sum(r[0] for r in results) / elapsed, sum(r[1] for r in results)


class Bare(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle + delayed ACK stall each answer ~40 ms.
    disable_nagle_algorithm = True

    def log_message(self, *a):
        pass

    def do_POST(self):
        n = len(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        raw = json.dumps({"success": True, "accepted": n}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--batch", type=int, default=500)
    args = ap.parse_args()

    bare = ThreadingHTTPServer(("127.0.0.1", 0), Bare)
    bare.daemon_threads = True
    threading.Thread(target=bare.serve_forever, daemon=True).start()
    base_rate, _ = drive(bare.server_address[1], args.seconds, args.clients, args.batch)
    bare.shutdown()

    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        cfg = Path(tmp) / "edge.yaml"
        cfg.write_text(json.dumps({
            "appliance_id": "bench", "data_dir": f"{tmp}/data",
            "spool": {"path": f"{tmp}/spool.db", "max_bytes": "8GiB"},
            "sources": [{"name": "gw", "type": "http", "listen": f"127.0.0.1:{port}", "token": TOKEN}],
            "logging": {"level": "warning"},
        }))
        edge = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--no-forward", "--config", str(cfg)],
                                cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            for _ in range(200):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.1)
            rate, failed = drive(port, args.seconds, args.clients, args.batch)
        finally:
            edge.terminate()
            edge.wait(30)

    print(f"{'path':<44}{'events/s':>12}")
    print(f"{'bare HTTP + JSON parse, no commit (baseline)':<44}{base_rate:>12,.0f}")
    print(f"{'http source -> durable spool commit':<44}{rate:>12,.0f}")
    print(f"ratio to baseline: {rate / base_rate:.2f}   non-200 answers: {failed}   target >= 50,000/s: "
          f"{'MET' if rate >= 50_000 else 'NOT MET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
