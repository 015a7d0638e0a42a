"""SIGKILL of the appliance while it polls: every committed poll cycle is intact, none is half there."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import yaml

from edge.encode import GOOD, decode
from edge.spool import SpoolError, SpoolReader

ROOT = Path(__file__).resolve().parents[2]
MAP = ROOT / "simulators/modbus/plant_map.yaml"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def test_kill_during_polling_keeps_whole_cycles(tmp_path):
    sim = subprocess.Popen([sys.executable, "-m", "simulators.modbus", "--map", str(MAP), "--port", "0", "--report", "60"],
                           cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    edge = None
    try:
        port = json.loads(sim.stdout.readline())["port"]
        devices = yaml.safe_load(MAP.read_text())["devices"]
        cfg = {
            "appliance_id": "crash-test", "data_dir": str(tmp_path / "data"),
            "spool": {"path": str(tmp_path / "spool.db"), "min_free_bytes": "1MiB"},
            "sources": [{"name": "plant", "type": "modbus", "host": "127.0.0.1", "port": port,
                         "poll_interval": "20ms", "connections": 2, "devices": devices}],
        }
        (tmp_path / "edge.yaml").write_text(yaml.safe_dump(cfg))
        edge = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--no-forward", "--config", str(tmp_path / "edge.yaml")],
                                cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        spool = tmp_path / "spool.db"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait until it has committed a good number of cycles
            try:
                with SpoolReader(spool) as r:
                    if len(r.peek(0, 48 * 20)) >= 48 * 20:
                        break
            except (SpoolError, sqlite3.Error):  # not created yet, or the schema is still being written
                pass
            time.sleep(0.1)
        edge.send_signal(signal.SIGKILL)
        edge.wait(10)
    finally:
        for p in (edge, sim):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(10)

    with SpoolReader(tmp_path / "spool.db") as r:
        rows = r.peek(0, 1_000_000)
    assert len(rows) >= 48 * 20
    seqs = [s for s, _ in rows]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # contiguous: nothing lost inside the spool
    readings = [decode(b) for _, b in rows]
    per_cycle = Counter(r.source_ts for r in readings)
    assert set(per_cycle.values()) == {48}, "a poll cycle was committed partially"
    assert all(r.quality == GOOD for r in readings)
