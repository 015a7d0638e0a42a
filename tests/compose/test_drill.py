"""ops/drill.py against the running appliance: a 60 s egress cut while every source
collects, a kill -9 of the edge mid-drain, and the emulator's accounting says no loss."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ops.composectl import ROOT, emulator_rows, http_json, wait_for

from .conftest import APPLIANCE_ID, ENV_FILE

pytestmark = pytest.mark.slow

CUT_S = 60


def test_air_gap_drill_60s_cut_kill_during_drain_loses_nothing(stack, tmp_path):
    stack.up()
    host, port = stack.port("zerobus", 8090)
    url = f"http://{host}:{port}"
    wait_for(lambda: emulator_rows(http_json(f"{url}/stats"), APPLIANCE_ID) > 0, timeout=150, what="first reading")
    stack.wait_healthy(["edge"], timeout=120)

    out = tmp_path / "drill.json"
    cmd = [sys.executable, "ops/drill.py", "-p", stack.project, "--env-file", str(ENV_FILE),
           "--cut", str(CUT_S), "--interval", "10", "--kill-during-drain", "--emulator-url", url,
           "--drain-timeout", "300", "--json", str(out)]
    for f in stack.files:
        cmd += ["-f", f]
    proc = subprocess.run(cmd, cwd=ROOT, env=stack.env, capture_output=True, text=True, timeout=CUT_S + 600)
    print(proc.stdout, proc.stderr)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    report = json.loads(out.read_text())
    v = report["verdict"]
    assert v["ok"] and v["drained"] and v["unexplained_missing"] == [] and v["tail_missing"] is None
    # Collection went on during the cut: the backlog grew, and aged with the cut.
    cut = [s for s in report["samples"] if s["phase"] == "cut"]
    assert len(cut) >= 5 and cut[-1]["depth_seqs"] > cut[0]["depth_seqs"] > 0
    assert report["peak_oldest_age_s"] >= CUT_S * 0.8
    assert v["window_seqs"] >= report["peak_depth"] > 0
    assert any("KILLED" in e["what"] for e in report["events"])
    # The egress is back: the edge reaches the sink again after the drill.
    before = emulator_rows(http_json(f"{url}/stats"), APPLIANCE_ID)
    wait_for(lambda: emulator_rows(http_json(f"{url}/stats"), APPLIANCE_ID) > before, timeout=60,
             what="readings flowing after the drill")
