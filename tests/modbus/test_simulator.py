"""The simulator as users run it: a subprocess with a fault schedule, read by the collector."""

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from edge.encode import BAD, GOOD
from edge.sources.modbus.collector import Source
from tests.modbus.conftest import Rig, source_config
from simulators.kit.aio import running, wait_until

ROOT = Path(__file__).resolve().parents[2]
MAP = ROOT / "simulators/modbus/plant_map.yaml"


def test_simulator_process_serves_map_and_injects_faults(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulators.modbus", "--map", str(MAP), "--port", "0", "--tick", "0.05",
         "--speed", "10", "--report", "0.5", "--duration", "4",
         "--exception", "3:0x06:0.5-1.5", "--offline", "2:0.5-2.5", "--fault", "line1/press1/pressure:stuck:0",
         "--register-fault", "1:holding_registers:29:close:0"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        # device 2 is silent for 2 s: the collector calls it offline after two timeouts (0.3 s each) in a
        # cycle, so a late start on a loaded host still sees the outage
        hello = json.loads(proc.stdout.readline())
        assert hello["event"] == "listening" and hello["devices"] == [1, 2, 3] and hello["plant_points"] == 48
        devices = yaml.safe_load(MAP.read_text())["devices"]

        async def main():
            rig = Rig(tmp_path)
            src = Source(source_config(devices, hello["port"], poll_interval=0.1, offline_retry=0.2, bad_repeat=0),
                         rig.context("plant"))
            async with running(src):
                await wait_until(lambda: any(r.status_code == 6 for r in rig.readings()), timeout=10)
                await wait_until(lambda: src.ctx.status.snapshot()["devices_offline"] == ["plc-line2"], timeout=10)
                await wait_until(lambda: src.ctx.status.snapshot()["state"] == "running", timeout=10)
                mark = len(rig.readings())
                await wait_until(lambda: len(rig.readings()) >= mark + 48)
            rig.close()
            return rig.readings()

        readings = asyncio.run(main())
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    events = [json.loads(line) for line in out.splitlines()]
    kinds = [e["event"] for e in events]
    assert "fault" in kinds and "report" in kinds and kinds[-1] == "summary"
    summary = events[-1]
    assert summary["requests"] > 0 and summary["exception_responses"] > 0 and summary["updates"] > 0
    assert summary["offline"] == [] and summary["exceptions"] == {}  # the schedule ended both faults
    line3 = [r for r in readings if r.point.startswith("line3/")]
    assert {r.status_code for r in line3 if r.quality == BAD} == {6}
    assert any(r.quality == GOOD for r in line3)
    # the stuck sensor reads one value throughout, its neighbours move
    stuck = {r.value_double for r in readings if r.point == "line1/press1/pressure" and r.quality == GOOD}
    moving = {r.value_double for r in readings if r.point == "line1/press1/motor_current" and r.quality == GOOD}
    assert len(stuck) == 1 and len(moving) > 3
    # the register fault: a read of 40030 (line1/oven1 bits) has the connection closed, the rest of line 1 reads
    assert summary["dropped_connections"] >= 1
    alarm = [r for r in readings if r.point == "line1/oven1/alarm"]
    assert alarm and alarm[0].status_code == 1004 and all(r.quality == BAD for r in alarm)
    temperature = [r for r in readings if r.point == "line1/press1/temperature"]
    assert any(r.quality == GOOD for r in temperature) and not any(r.status_code == 1004 for r in temperature)
