"""Real processes for the admin tests: gunicorn serving the app, and a writer ingesting at full rate."""

from __future__ import annotations

import contextlib
import http.client
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from edge.admin.server import gunicorn_argv
from simulators.kit.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


def get(port: int, path: str, headers: dict | None = None, timeout: float = 10.0, tls=None,
        response_headers: dict | None = None) -> tuple[int, bytes]:
    """GET over HTTP, or HTTPS verified against ``tls`` (an ssl.SSLContext); fills ``response_headers`` if given."""
    conn = (http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=tls) if tls is not None
            else http.client.HTTPConnection("127.0.0.1", port, timeout=timeout))
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        if response_headers is not None:
            response_headers.update({k.lower(): v for k, v in r.getheaders()})
        return r.status, r.read()
    finally:
        conn.close()


class Gunicorn:
    """``edge admin``'s gunicorn command line (from edge.admin.server), bound to a free loopback port."""

    def __init__(self, config_path: Path, env: dict[str, str], *, workers: int = 2, log: Path, tls=None,
                 **argv_options):
        self.port = free_port()
        self.tls = tls
        argv = gunicorn_argv(str(config_path), f"127.0.0.1:{self.port}", workers=workers, timeout=30, **argv_options)
        self.log_path = log
        self._log = open(log, "wb")
        full_env = {**os.environ, **env, "EDGE_CONFIG": str(config_path), "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(argv, env=full_env, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log_tail()}")
            try:
                if get(self.port, "/healthz", timeout=2, tls=tls)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"gunicorn did not become ready: {self.log_tail()}")
            time.sleep(0.2)

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


def appliance_config(tmp: Path, emu, appliance_id: str, sources: list[dict], *, refresh: float = 5,
                     **zerobus) -> dict:
    """An ``edge run`` config sending to the emulator ``emu`` (its secret as ${ZB_SECRET}), quick to reconnect."""
    return {
        "appliance_id": appliance_id,
        "data_dir": str(tmp / "data"),
        "spool": {"path": str(tmp / "spool.db"), "max_bytes": "256MiB", "min_free_bytes": "1MiB"},
        "zerobus": {"endpoint": emu.grpc_endpoint, "workspace_url": emu.workspace_url, "table": emu.table,
                    "client_id": emu.client_id, "client_secret": "${ZB_SECRET}",
                    "reconnect_initial": "200ms", "reconnect_max": "1s", **zerobus},
        "sources": sources,
        "admin": {"secure_cookies": False, "refresh": refresh, "password": "${EDGE_ADMIN_PASSWORD}"},
        "logging": {"level": "info"},
    }


@contextlib.contextmanager
def appliance(tmp: Path, cfg: dict, env: dict[str, str], ready=None):
    """``edge run`` on ``cfg`` (written to tmp/edge.yaml) and the admin page on the same file, which
    resolves the same ``${...}`` variables from ``env``; ``ready()`` is waited for before gunicorn starts.
    Yields (gunicorn, the edge process)."""
    import yaml

    from simulators.kit.wait import wait_until

    path = tmp / "edge.yaml"
    path.write_text(yaml.safe_dump(cfg))
    log = open(tmp / "edge.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(path)], cwd=ROOT,
                            env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, stdout=log, stderr=subprocess.STDOUT)
    gun = None
    try:
        if ready is not None:
            wait_until(ready, 45, "the appliance to be ready", every=0.2)
        gun = Gunicorn(path, env, workers=2, log=tmp / "gunicorn.log")
        yield gun, proc
    finally:
        if gun is not None:
            gun.stop()
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


class Ingest(threading.Thread):
    """Submits batches to a SpoolWriter as fast as commits allow, acking behind like a forwarder would."""

    def __init__(self, writer, make_batch, *, batch: int = 1000, keep: int = 20_000, rate: float | None = None):
        super().__init__(daemon=True, name="ingest")
        self.writer, self.make_batch, self.batch, self.keep, self.rate = writer, make_batch, batch, keep, rate
        self.rows = 0
        self.errors: list[BaseException] = []
        self.latencies: list[float] = []
        self._halt = threading.Event()
        self._window = threading.Lock()
        self._marks: list[tuple[float, int]] = []

    def run(self) -> None:
        t0 = time.monotonic()
        try:
            while not self._halt.is_set():
                t = time.perf_counter()
                res = self.writer.submit(self.make_batch(self.batch)).result(30)
                self.latencies.append(time.perf_counter() - t)
                self.rows += self.batch
                if res.last_seq > self.keep:
                    self.writer.ack(res.last_seq - self.keep)
                with self._window:
                    self._marks.append((time.monotonic(), self.rows))
                if self.rate:
                    ahead = self.rows / self.rate - (time.monotonic() - t0)
                    if ahead > 0:
                        self._halt.wait(ahead)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(exc)

    def rows_between(self, t0: float, t1: float) -> int:
        with self._window:
            before = [r for t, r in self._marks if t <= t0]
            upto = [r for t, r in self._marks if t <= t1]
        return (upto[-1] if upto else 0) - (before[-1] if before else 0)

    def stop(self) -> None:
        self._halt.set()
        self.join(30)


def _client_main(argv: list[str]) -> None:
    """``python -m tests.admin.live PORT COOKIE SECONDS INTERVAL THREADS``: load from another process.

    Prints one JSON line: request count, latencies (s) and errors. Running outside
    the test process keeps client work off the GIL the writer thread needs, so only
    the page's own cost (gunicorn + SQLite reads, CPU and I/O) is measured.
    """
    import json

    port, cookie, seconds, interval, threads = int(argv[0]), argv[1], float(argv[2]), float(argv[3]), int(argv[4])
    paths = ["/", "/api/status", "/metrics", "/readyz"]
    lat: list[float] = []
    errs: list[str] = []
    end = time.monotonic() + seconds

    def loop(k: int) -> None:
        i = k
        while time.monotonic() < end:
            path = paths[i % len(paths)]
            i += 1
            t = time.perf_counter()
            try:
                status, data = get(port, path, headers={"Cookie": cookie})
                if status != 200:
                    errs.append(f"{path}: HTTP {status} {data[:200]!r}")
            except OSError as exc:
                errs.append(f"{path}: {exc}")
            lat.append(time.perf_counter() - t)
            if interval:
                time.sleep(interval)

    ts = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print(json.dumps({"n": len(lat), "lat": lat, "errors": errs[:20]}))


if __name__ == "__main__":
    _client_main(sys.argv[1:])
