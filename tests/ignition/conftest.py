"""An `edge run` process with an http source, on a real spool, started per test."""

from __future__ import annotations

import http.client
import json
import ssl
from pathlib import Path

import pytest

from simulators.kit.edgeproc import EdgeRun
from simulators.kit.ports import free_port

TOKEN = "test-token-0123456789abcdef"


class EdgeProcess(EdgeRun):
    """`edge run` with one http source; `kill()` is SIGKILL, `start()` again reuses the same spool."""

    def __init__(self, tmp: Path, *, forward: bool = False, zerobus: dict | None = None, spool: dict | None = None,
                 http: dict | None = None, tls_ca: str | None = None):
        self.port = free_port()
        self.tls_ca = tls_ca  # with a tls_cert in http: requests go over HTTPS, verified against this CA
        cfg = {
            "appliance_id": "plant-test",
            "spool": {"path": str(tmp / "spool.db"), "max_bytes": "64MiB", **(spool or {})},
            "sources": [{"name": "gw", "type": "http", "listen": f"127.0.0.1:{self.port}", "token": "${GW_TOKEN}",
                         **(http or {})}],
            "logging": {"level": "info"},
        }
        if zerobus:
            cfg["zerobus"] = zerobus
        super().__init__(tmp, cfg, env={"GW_TOKEN": TOKEN}, forward=forward)

    def start(self, timeout: float = 20.0) -> "EdgeProcess":
        super().start()
        if not self.wait_for(self._listening, timeout, every=0.1):
            raise TimeoutError(f"edge did not listen in {timeout}s:\n{self.log_tail()}")
        return self

    def _listening(self) -> bool:
        try:
            return self.request("GET", "/system/zerobus/health")[0] == 200
        except OSError:
            return False

    def connect(self, timeout: float = 15) -> http.client.HTTPConnection:
        if self.tls_ca:
            ctx = ssl.create_default_context(cafile=self.tls_ca)
            return http.client.HTTPSConnection("localhost", self.port, timeout=timeout, context=ctx)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method: str, path: str, body=None, headers=None, conn=None):
        own = conn is None
        conn = conn or self.connect()
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
