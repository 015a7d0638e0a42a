"""MQTT pieces of the kit: the collector in-process on the real spool writer, and ``edge run`` end to end.

``edge_config`` builds an appliance config for one MQTT source on a kit ``Broker``;
``InProcessEdge`` runs the real SpoolWriter and the MQTT source on an event loop in a
thread (no forwarder); ``EdgeProcess`` runs the whole appliance (``python -m edge.cli
run``) as a child process against a broker and the ZeroBus emulator.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import yaml

from edge.config import parse
from edge.runner import open_spool
from edge.sources import mqtt as mqtt_source
from edge.sources.base import SourceContext, SourceStatus
from edge.writer import SpoolWriter
from simulators.kit import procs
from simulators.kit.wait import wait_until
from simulators.kit.broker import ROOT, Broker

JSON_SUB = {"topic": "plant/#", "json": {"value": "$", "timestamp": "ts", "timestamp_format": "epoch_ms"}}
SPARKPLUG_SUB = {"topic": "spBv1.0/#", "format": "sparkplug"}


def edge_config(data_dir: Path, broker: Broker, *, password: str | None = None, subs=(JSON_SUB, SPARKPLUG_SUB),
                spool_max: str = "1GiB", url: str | None = None, **source: Any) -> Any:
    return parse({
        "appliance_id": "edge-test",
        "data_dir": str(data_dir),
        "spool": {"path": str(data_dir / "spool.db"), "max_bytes": spool_max, "when_full": "block", "min_free_bytes": 0},
        "sources": [{
            "name": "mqtt1", "type": "mqtt", "url": url or f"mqtt://127.0.0.1:{broker.port}", "username": "edge",
            "password": broker.password("edge") if password is None else password,
            "subscriptions": list(subs), "reconnect_initial": 0.2, "reconnect_max": 1.0, **source,
        }],
    }, env={})


class InProcessEdge:
    """The real SpoolWriter + the MQTT Source on an event loop in a thread (no forwarder)."""

    def __init__(self, cfg: Any):
        self.cfg = cfg
        self.spool_path = cfg.spool.path
        self.writer = SpoolWriter(open_spool(cfg))
        src_cfg = cfg.sources[0]
        data_dir = Path(cfg.data_dir) / "sources" / src_cfg.name
        data_dir.mkdir(parents=True, exist_ok=True)
        self.status = SourceStatus(src_cfg.name, "mqtt", self.writer.put_state)
        self.ctx = SourceContext(
            appliance_id=cfg.appliance_id, data_dir=data_dir, emit=self.writer.emit, submit=self.writer.submit,
            quarantine=self.writer.quarantine, wait_for_space=self.writer.wait_for_space_async, status=self.status,
            log=logging.getLogger("kit.mqtt"),
        )
        self.source = mqtt_source.Source(src_cfg, self.ctx)
        self.loop = asyncio.new_event_loop()
        self.task: asyncio.Task | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.task = self.loop.create_task(self.source.run())
        try:
            self.loop.run_until_complete(self.task)
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # the test asserts on it
            self.error = exc

    def state(self) -> dict:
        return self.status.snapshot()

    def wait_state(self, state: str, timeout: float = 15.0) -> dict:
        wait_until(lambda: self.state()["state"] == state, timeout, f"source state {state} (now {self.state()})")
        return self.state()

    def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(15)
        self.writer.close()
        assert self.error is None, f"the source crashed: {self.error!r}"


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
