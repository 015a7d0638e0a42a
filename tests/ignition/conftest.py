"""An `edge run` process with an http source, on a real spool, started per test."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EdgeProcess:
    """`edge run` as a child process; `kill()` is SIGKILL, `start()` again reuses the same spool."""

    def __init__(self, tmp: Path, *, forward: bool = False, zerobus: dict | None = None, spool: dict | None = None,
                 http: dict | None = None):
        self.tmp = tmp
        self.port = free_port()
        self.spool_path = tmp / "spool.db"
        self.forward = forward
        self.config = tmp / "edge.yaml"
        cfg = {
            "appliance_id": "plant-test",
            "data_dir": str(tmp / "data"),
            "spool": {"path": str(self.spool_path), "max_bytes": "64MiB", **(spool or {})},
            "sources": [{"name": "gw", "type": "http", "listen": f"127.0.0.1:{self.port}", "token": "${GW_TOKEN}",
                         **(http or {})}],
            "logging": {"level": "info"},
        }
        if zerobus:
            cfg["zerobus"] = zerobus
        self.config.write_text(yaml.safe_dump(cfg))
        self.proc: subprocess.Popen | None = None
        self.log = tmp / "edge.log"

    def start(self, timeout: float = 20.0) -> "EdgeProcess":
        args = [sys.executable, "-m", "edge.cli", "run", "--config", str(self.config)]
        if not self.forward:
            args.append("--no-forward")
        env = {**os.environ, "GW_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"edge exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if self.request("GET", "/system/zerobus/health")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"edge did not listen in {timeout}s:\n{self.log.read_text()[-3000:]}")

    def request(self, method: str, path: str, body=None, headers=None, conn=None):
        own = conn is None
        conn = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        try:
            raw = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
            conn.request(method, path, body=raw, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            try:
                parsed = json.loads(data)
            except ValueError:
                parsed = data
            return resp.status, parsed, resp
        finally:
            if own:
                conn.close()

    def post_batch(self, events, token: str | None = TOKEN, conn=None, header="Authorization"):
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers[header] = f"Bearer {token}" if header == "Authorization" else token
        return self.request("POST", "/system/zerobus/ingest/batch", events, headers, conn)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def edge_http(tmp_path):
    procs: list[EdgeProcess] = []

    def make(**kw) -> EdgeProcess:
        p = EdgeProcess(tmp_path, **kw)
        procs.append(p)
        return p.start()

    yield make
    for p in procs:
        p.stop()
