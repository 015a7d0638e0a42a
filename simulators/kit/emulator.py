"""Test harness: run the ZeroBus emulator (``python -m simulators.zerobus``) as a subprocess.

Stable API (forwarder, MQTT, Compose and drill tests depend on it)::

    from simulators.kit.emulator import Emulator

    with Emulator() as emu:                       # free loopback ports, temp data dir
        sdk = ZerobusSdk(emu.grpc_endpoint, emu.workspace_url)
        stream = sdk.create_stream(client_id=emu.client_id, client_secret=emu.client_secret,
                                   table_properties=TableProperties(emu.table, Reading.DESCRIPTOR))
        ...
        emu.table_stats()["rows"]                 # /stats of emu.table
        emu.set_faults({"fail_after_records": {"records": 100, "code": "UNAVAILABLE"}})
        emu.clear_faults()
        emu.rows(appliance_id="a1", from_seq=0, limit=10)   # decoded rows
        emu.restart()                             # same ports, same data dir, tokens stay valid
        emu.kill()                                # SIGKILL (then start() again if you like)

Constructor: ``Emulator(data_dir=None, tables=None, tls=False, client_id=None, client_secret=None,
store="sqlite", extra_args=(), env=None, ready_timeout=30, keep_data=False)``.
``extra_args`` go to the emulator's command line (e.g. ``["--ddl", path, "--token-ttl", "60"]``).

- ``data_dir`` None -> a temp dir removed by ``stop()`` (kept if given by the caller, or with
  ``keep_data=True``).
- ``client_id``/``client_secret`` None -> the emulator accepts any pair; the harness
  still hands out ``.client_id`` / ``.client_secret`` ("test-client" / "test-secret").
  Given -> the emulator enforces exactly that pair.
- ``tls=True`` -> gRPC and HTTP over TLS with the emulator's generated CA;
  ``.ca_path`` is the CA, ``.ca_bundle`` the system CAs + that CA: run the SDK with
  ``SSL_CERT_FILE=emu.ca_bundle`` (``.sdk_env()`` returns that mapping). Verification stays on.

Attributes: ``.grpc_endpoint`` ("http://127.0.0.1:PORT", or https with TLS; the SDK
``host``), ``.workspace_url`` (the SDK ``unity_catalog_url``), ``.http_url``,
``.grpc_port``, ``.http_port``, ``.table`` (the first table), ``.tables``,
``.data_dir``, ``.store_path``, ``.log_path`` (the emulator's stdout/stderr).

Methods: ``start()``, ``stop()`` (SIGTERM, clean), ``kill()`` (SIGKILL), ``restart()``
(stop + start on the same ports and data dir), ``stats()`` (whole /stats document),
``table_stats(table=None)``, ``set_faults(dict)`` (merged into the active faults),
``clear_faults()``, ``faults()``, ``rows(table=None, appliance_id=None, from_seq=None,
limit=100)``, ``wait_for_rows(n, table=None, timeout=30)``, ``http(method, path, body=None)``,
``sdk_env()``, ``is_running()``.

A pytest fixture ``emulator`` (function-scoped, plaintext) lives in tests/support/fixtures.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterable
from simulators.kit.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TABLE = "main.edge.readings"
HTTP_TIMEOUT_S = 10.0


class EmulatorError(RuntimeError):
    pass


class Emulator:
    def __init__(
        self,
        data_dir: str | os.PathLike | None = None,
        tables: Iterable[str] | None = None,
        tls: bool = False,
        client_id: str | None = None,
        client_secret: str | None = None,
        store: str = "sqlite",
        extra_args: Iterable[str] = (),
        env: dict[str, str] | None = None,
        ready_timeout: float = 30.0,
        keep_data: bool = False,
    ):
        self._own_dir = data_dir is None and not keep_data
        self.data_dir = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="zerobus-emu-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.tables = list(tables or [DEFAULT_TABLE])
        self.table = self.tables[0]
        self.tls = tls
        self._enforce = client_id is not None
        self.client_id = client_id or "test-client"
        self.client_secret = client_secret if client_secret is not None else "test-secret"
        self.store = store
        self.extra_args = list(extra_args)
        self.env = env
        self.ready_timeout = ready_timeout
        # Chosen here, not by the emulator's bind(0): a restart reuses them (see kit/ports.py).
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.ca_path: str | None = None
        self.ca_bundle: str | None = None
        self.proc: subprocess.Popen | None = None
        self.log_path = self.data_dir / "emulator.log"
        self.store_path = self.data_dir / "store.sqlite"
        self._log = None

    # -- URLs ------------------------------------------------------------------------
    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def grpc_endpoint(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.http_port}"

    @property
    def workspace_url(self) -> str:
        return self.http_url

    def sdk_env(self) -> dict[str, str]:
        """Environment for an SDK process that must trust the emulator's CA (TLS only)."""
        return {"SSL_CERT_FILE": self.ca_bundle} if self.tls and self.ca_bundle else {}

    # -- lifecycle ----------------------------------------------------------------------
    def __enter__(self) -> "Emulator":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> "Emulator":
        if self.is_running():
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ready = self.data_dir / "ready.json"
        ready.unlink(missing_ok=True)
        cmd = [
            sys.executable, "-m", "simulators.zerobus",
            "--host", "127.0.0.1",
            "--grpc-port", str(self.grpc_port),
            "--http-port", str(self.http_port),
            "--data-dir", str(self.data_dir),
            "--store", self.store,
        ]
        for t in self.tables:
            cmd += ["--table", t]
        if self.tls:
            cmd.append("--tls")
        if self._enforce:
            cmd += ["--client-id", self.client_id, "--client-secret", self.client_secret]
        cmd += self.extra_args
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        for var in [k for k in env if k.startswith("ZEROBUS_EMULATOR_")]:
            env.pop(var)  # flags only: a developer's environment must not leak into tests
        env.update(self.env or {})
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, cwd=str(ROOT), env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EmulatorError(f"emulator exited with {self.proc.returncode}:\n{self.log_tail()}")
            if ready.exists():
                info = json.loads(ready.read_text())
                self.grpc_port, self.http_port = info["grpc_port"], info["http_port"]
                self.ca_path, self.ca_bundle = info.get("ca"), info.get("ca_bundle")
                try:
                    if self.http("GET", "/healthz").get("ok"):
                        return self
                except (OSError, EmulatorError):
                    pass
            time.sleep(0.05)
        self.kill()
        raise EmulatorError(f"emulator not ready within {self.ready_timeout} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM and wait (clean shutdown: the store is closed). Removes a temp data dir."""
        self._terminate(signal.SIGTERM, timeout)
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL: no clean shutdown. The data dir stays; ``start()`` brings it back."""
        self._terminate(signal.SIGKILL, 10.0)

    def restart(self) -> "Emulator":
        """Clean stop and start again on the same ports with the same data dir."""
        self._terminate(signal.SIGTERM, 20.0)
        return self.start()

    def _terminate(self, sig: int, timeout: float) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return "(no log)"

    # -- HTTP API -------------------------------------------------------------------------
    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        return ssl.create_default_context(cafile=self.ca_path)

    def http(self, method: str, path: str, body: Any = None, expect: Iterable[int] = (200,)) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.http_url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S, context=self._ssl_context()) as resp:
                status, payload = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, payload = exc.code, exc.read()
        if status not in tuple(expect):
            raise EmulatorError(f"{method} {path} -> HTTP {status}: {payload[:500]!r}")
        return json.loads(payload) if payload else None

    def stats(self) -> dict:
        return self.http("GET", "/stats")

    def table_stats(self, table: str | None = None) -> dict:
        return self.stats()["tables"][table or self.table]

    def set_faults(self, faults: dict) -> dict:
        return self.http("POST", "/faults", faults)

    def clear_faults(self) -> dict:
        return self.http("DELETE", "/faults")

    def faults(self) -> dict:
        return self.http("GET", "/faults")

    def rows(self, table: str | None = None, appliance_id: str | None = None, from_seq: int | None = None, limit: int = 100) -> list[dict]:
        q = {"limit": str(limit)}
        if appliance_id is not None:
            q["appliance_id"] = appliance_id
        if from_seq is not None:
            q["from_seq"] = str(from_seq)
        path = f"/tables/{urllib.parse.quote(table or self.table)}/rows?{urllib.parse.urlencode(q)}"
        return self.http("GET", path)["rows"]

    def wait_for_rows(self, n: int, table: str | None = None, timeout: float = 30.0) -> dict:
        """Poll /stats until the table holds at least ``n`` rows; returns its stats."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.table_stats(table)
            if st["rows"] >= n or time.monotonic() > deadline:
                return st
            time.sleep(0.05)
