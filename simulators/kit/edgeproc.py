"""`edge run` as a child process with a config built from a dict, for end-to-end tests.

    with EdgeRun(tmp_path, {"appliance_id": "a", "sources": [...]}, emulator=emu) as edge:
        edge.wait_for(lambda: ..., timeout=30)
        edge.kill(); edge.start()          # SIGKILL and restart on the same spool
        edge.stats()                       # the spool's stats, read-only
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import yaml

from edge.spool import SpoolReader
from simulators.kit import procs

ROOT = Path(__file__).resolve().parents[2]


class EdgeRun:
    def __init__(self, tmp: Path, config: dict, *, emulator=None, env: dict | None = None, forward: bool = True):
        self.forward = forward
        self.tmp = Path(tmp)
        cfg = {"data_dir": str(self.tmp / "data"), **config}
        cfg.setdefault("spool", {}).setdefault("path", str(self.tmp / "spool.db"))
        cfg["spool"].setdefault("max_bytes", "256MiB")
        if emulator is not None:
            cfg.setdefault("zerobus", {})
            cfg["zerobus"] = {"endpoint": emulator.grpc_endpoint, "workspace_url": emulator.workspace_url,
                              "client_id": emulator.client_id, "client_secret": emulator.client_secret,
                              "reconnect_initial": "200ms", "reconnect_max": "2s", **cfg["zerobus"]}
        self.config = cfg
        self.spool_path = Path(cfg["spool"]["path"])
        self.config_path = self.tmp / "edge.yaml"
        self.config_path.write_text(yaml.safe_dump(cfg))
        self.log_path = self.tmp / "edge.log"
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.proc: subprocess.Popen | None = None

    def start(self) -> "EdgeRun":
        args = [sys.executable, "-m", "edge.cli", "run", "--config", str(self.config_path)]
        if not self.forward:
            args.append("--no-forward")
        self.proc = subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT)
        if not self.wait_for(self._spool_ready, 20):
            raise RuntimeError(f"edge did not create its spool:\n{self.log_tail()}")
        return self

    def log_tail(self, n: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path.exists() else ""

    def wait_for(self, pred: Callable[[], Any], timeout: float, every: float = 0.2) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"edge exited with {self.proc.returncode}:\n{self.log_tail()}")
            if pred():
                return True
            time.sleep(every)
        return False

    def _spool_ready(self) -> bool:
        """The file exists and its schema is committed (a reader that opens it earlier sees no tables)."""
        if not self.spool_path.exists():
            return False
        try:
            self.stats()
        except sqlite3.OperationalError:
            return False
        return True

    def stats(self) -> dict:
        with SpoolReader(self.spool_path) as r:
            return r.stats()

    def forwarder(self) -> dict:
        with SpoolReader(self.spool_path) as r:
            states = r.states("forwarder")
        return states[0] if states else {}

    def kill(self) -> None:
        procs.kill(self.proc)

    def stop(self) -> None:
        procs.stop(self.proc, 30)

    def __enter__(self) -> "EdgeRun":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
