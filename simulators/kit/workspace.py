"""Test harness: the local Databricks workspace stand-in (``python -m simulators.databricks``) as a subprocess.

    with Emulator() as emu, Workspace(emu) as ws:
        ws.url            # workspace_url for the appliance's config
        ws.statements()   # every statement received, and the grants
        ws.sql("CREATE TABLE ...")

ZeroBus token requests are relayed to the emulator, so one ``workspace_url``
serves both the SDK's token and the REST calls, as in a real workspace.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from simulators.kit.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


class Workspace:
    def __init__(self, emulator=None, *, tables=("main.edge.readings",), warehouse_id="wh-test",
                 client_id=None, client_secret=None, table_type="MANAGED", fmt="DELTA"):
        self.emulator = emulator
        self.port = free_port()
        self.warehouse_id = warehouse_id
        self._tmp = tempfile.TemporaryDirectory(prefix="workspace-")
        self.args = [sys.executable, "-m", "simulators.databricks", "--port", str(self.port),
                     "--data-dir", self._tmp.name, "--warehouse-id", warehouse_id,
                     "--table-type", table_type, "--format", fmt]
        for t in tables:
            self.args += ["--table", t]
        if emulator is not None:
            self.args += ["--store", str(emulator.store_path), "--token-upstream", f"{emulator.http_url}/oidc/v1/token"]
        if client_id:
            self.args += ["--client-id", client_id, "--client-secret", client_secret]
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Workspace":
        self.proc = subprocess.Popen(self.args, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                     stdout=subprocess.DEVNULL, stderr=open(Path(self._tmp.name) / "log", "wb"))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1):
                    return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError((Path(self._tmp.name) / "log").read_text())
                time.sleep(0.1)
        raise TimeoutError("workspace stand-in did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self._tmp.cleanup()

    def __enter__(self) -> "Workspace":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _token(self) -> str:
        req = urllib.request.Request(f"{self.url}/oidc/v1/token", method="POST",
                                     data=b"grant_type=client_credentials&client_id=test&client_secret=test")
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())["access_token"]

    def _call(self, method: str, path: str, body=None) -> dict:
        req = urllib.request.Request(f"{self.url}{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {self._token()}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def sql(self, statement: str) -> dict:
        return self._call("POST", "/api/2.0/sql/statements", {"statement": statement, "warehouse_id": self.warehouse_id})

    def statements(self) -> dict:
        return self._call("GET", "/_test/statements")
