"""Behaves like the Ignition-to-ZeroBus gateway scripts, for tests, drills and benchmarks.

Tag changes go into an in-memory queue (like the script's); every
``flush_interval`` the queue is POSTed in batches of at most ``batch_size``
events to ``<url>/system/zerobus/ingest/batch`` with a 10 s timeout. Anything
but HTTP 200, or an exception, puts the whole batch back at the head of the
queue - exactly the scripts' behaviour. Each event's value carries this
gateway's own sequence number (tag ``Sim/Counter``) or a plant signal, so a
test can reconcile "sent" against "landed".

    python -m simulators.ignition --url http://127.0.0.1:8088 --token-file tok --rate 1000 --duration 30

At exit (or SIGUSR1) it prints one JSON line: events generated, acknowledged
(answered 200), still queued, requests, failures by status.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import signal
import ssl
import sys
import threading
import time
import urllib.parse

# Jython's json module writes floats with repr and leaves unicode as is; ours does the same.


class Gateway:
    def __init__(self, url: str, token: str, *, batch_size: int = 500, flush_interval: float = 0.5,
                 provider: str = "default", gateway_id: str = "gw1", cafile: str | None = None,
                 timeout: float = 10.0, header: str = "Authorization"):
        self.url = urllib.parse.urlsplit(url.rstrip("/"))
        self.token = token
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.provider = provider
        self.gateway_id = gateway_id
        self.timeout = timeout
        self.header = header
        self.queue: collections.deque = collections.deque()
        self.lock = threading.Lock()
        self.seq = 0
        self.acked = 0
        self.acked_seqs: list[int] = []
        self.requests = 0
        self.failures: collections.Counter = collections.Counter()
        self._conn = None
        self._tls = ssl.create_default_context(cafile=cafile) if self.url.scheme == "https" else None

    # --- what the tag change script does on every change
    def tag_change(self, tag: str, value, data_type: str, quality: str = "Good", quality_code: int = 192,
                   ts_ms: int | None = None) -> None:
        event = {
            "tagPath": tag,
            "tagProvider": self.provider,
            "value": value,
            "quality": quality,
            "qualityCode": quality_code,
            "timestamp": ts_ms if ts_ms is not None else int(time.time() * 1000),
            "dataType": data_type,
        }
        with self.lock:
            self.queue.append(event)

    def counter_change(self) -> int:
        """A change of the Sim/<gateway>/Counter tag whose value is this gateway's next sequence number."""
        self.seq += 1
        self.tag_change(f"Sim/{self.gateway_id}/Counter", self.seq, "long")
        return self.seq

    # --- what the flush timer does
    def _connection(self):
        if self._conn is None:
            host, port = self.url.hostname, self.url.port
            if self._tls is not None:
                self._conn = http.client.HTTPSConnection(host, port, timeout=self.timeout, context=self._tls)
            else:
                self._conn = http.client.HTTPConnection(host, port, timeout=self.timeout)
        return self._conn

    def post(self, batch: list[dict]) -> int:
        body = json.dumps(batch).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self.header.lower() == "authorization":
            headers["Authorization"] = f"Bearer {self.token}"
        else:
            headers[self.header] = self.token
        conn = self._connection()
        try:
            conn.request("POST", f"{self.url.path}/system/zerobus/ingest/batch", body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            if resp.getheader("Connection", "").lower() == "close":
                self._close()
            return resp.status
        except Exception:
            self._close()
            raise

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def flush(self) -> None:
        while True:
            with self.lock:
                if not self.queue:
                    return
                batch = [self.queue.popleft() for _ in range(min(self.batch_size, len(self.queue)))]
            self.requests += 1
            try:
                status = self.post(batch)
            except Exception as exc:  # the script re-queues on any exception
                status = type(exc).__name__
            if status == 200:
                self.acked += len(batch)
                self.acked_seqs.extend(e["value"] for e in batch if e["tagPath"].endswith("/Counter"))
                continue
            self.failures[str(status)] += 1
            with self.lock:
                self.queue.extendleft(reversed(batch))
            return

    def report(self) -> dict:
        with self.lock:
            queued = len(self.queue)
        return {"gateway": self.gateway_id, "generated": self.seq, "acked": self.acked, "queued": queued,
                "requests": self.requests, "failures": dict(self.failures)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m simulators.ignition", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True, help="the appliance's base URL, e.g. http://edge:8088")
    p.add_argument("--token-file", required=True, help="file holding the bearer token")
    p.add_argument("--rate", type=float, default=100.0, help="tag changes per second")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--flush-interval", type=float, default=0.5)
    p.add_argument("--duration", type=float, default=0.0, help="seconds to run (0: until SIGTERM)")
    p.add_argument("--gateway-id", default="gw1")
    p.add_argument("--cafile", default=None, help="CA bundle for an https:// URL")
    args = p.parse_args(argv)
    token = open(args.token_file).read().strip()
    gw = Gateway(args.url, token, batch_size=args.batch_size, flush_interval=args.flush_interval,
                 gateway_id=args.gateway_id, cafile=args.cafile)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGUSR1, lambda *_: print(json.dumps(gw.report()), flush=True))
    start = time.monotonic()
    made = 0
    next_flush = start + args.flush_interval
    while not stop.is_set():
        now = time.monotonic()
        if args.duration and now - start >= args.duration:
            break
        due = int((now - start) * args.rate)
        while made < due:
            gw.counter_change()
            made += 1
        if now >= next_flush:
            gw.flush()
            next_flush = now + args.flush_interval
        stop.wait(min(0.01, max(0.0, next_flush - time.monotonic())))
    # Like a gateway shutting down cleanly: one last flush attempt.
    gw.flush()
    print(json.dumps(gw.report()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
