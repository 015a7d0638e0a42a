"""The whole appliance as a child process (`python -m edge.cli run`) for the end-to-end MQTT tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.mqtt.broker import ROOT, Broker
from tests.mqtt.harness import JSON_SUB, SPARKPLUG_SUB
from tests.support import procs


class EdgeProcess:
    def __init__(self, workdir: Path, broker: Broker, emulator, **source):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "edge.yaml"
        self.config.write_text(yaml.safe_dump({
            "appliance_id": "edge-e2e",
            "data_dir": str(workdir / "data"),
            "spool": {"path": str(workdir / "data" / "spool.db"), "max_bytes": "1GiB", "min_free_bytes": 0},
            "zerobus": {
                "endpoint": emulator.grpc_endpoint, "workspace_url": emulator.workspace_url, "table": emulator.table,
                "client_id": emulator.client_id, "client_secret": "${ZB_SECRET}",
                "reconnect_initial": "100ms", "reconnect_max": "1s",
            },
            "sources": [{
                "name": "mqtt1", "type": "mqtt", "url": f"mqtt://127.0.0.1:{broker.port}", "username": "edge",
                "password": "${MQTT_PASSWORD}", "subscriptions": [JSON_SUB, SPARKPLUG_SUB],
                "reconnect_initial": 0.2, "reconnect_max": 1.0, **source,
            }],
        }))
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "ZB_SECRET": emulator.client_secret,
                    "MQTT_PASSWORD_FILE": str(broker.password_file("edge"))}
        self.proc: subprocess.Popen | None = None
        self.log = open(workdir / "edge.log", "ab")
        self.starts = 0

    def start(self) -> "EdgeProcess":
        self.starts += 1
        self.proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(self.config)],
                                     cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        return self

    def kill(self) -> None:
        procs.kill(self.proc)

    def stop(self) -> None:
        procs.stop(self.proc, 30)
        self.log.flush()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 30) -> str:
        self.log.flush()
        return "\n".join((self.workdir / "edge.log").read_text(errors="replace").splitlines()[-n:])


def landed(emulator, appliance_id: str = "edge-e2e") -> dict[str, list[int]]:
    """Per-publisher simulator seqs of every row in the emulator's table, duplicates included."""
    out: dict[str, list[int]] = {}
    from_seq = 0
    while True:
        rows = emulator.rows(appliance_id=appliance_id, from_seq=from_seq, limit=5000)
        if not rows:
            return out
        for r in rows:
            from_seq = max(from_seq, int(r["seq"]) + 1)
            point = r.get("point") or ""
            parts = point.split("/")
            if r.get("kind") != "reading":
                continue
            if point.startswith("plant/") and r.get("value_json") is not None:
                v = r["value_json"]
                v = json.loads(v) if isinstance(v, str) else v
                out.setdefault(parts[1], []).append(int(v["seq"]))
            elif parts[-1] == "msg_seq":
                out.setdefault(parts[1], []).append(int(r["value_int"]))
