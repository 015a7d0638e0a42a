"""SIGKILL at random moments: every commit the child reported survives, seqs stay contiguous."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from edge.encode import decode
from edge.spool import Spool

from .conftest import accounting

ROOT = Path(__file__).resolve().parents[2]
KILLS = 25
MIN_KILLS = 20


def run_child(path: Path, run_id: int, rng: random.Random) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen([sys.executable, str(Path(__file__).with_name("crash_child.py")), str(path), str(run_id)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        first = child.stdout.readline()  # wait until it is really appending
        assert first, child.stderr.read()
        time.sleep(rng.uniform(0.0, 0.4))
        child.send_signal(signal.SIGKILL)
        rest = child.stdout.read()
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(10)
        child.stdout.close()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    # A line cut by the kill has no newline: the child had not finished saying it, so it does not count.
    return [line for line in [first, *rest.splitlines(keepends=True)] if line.endswith("\n")]


def test_sigkill_never_loses_a_reported_commit(tmp_path):
    rng = random.Random(20261124)
    path = tmp_path / "spool.db"
    reported: dict[int, str] = {}  # seq -> "tag/index" the child said was committed
    acked = 0
    total_lines = 0
    t0 = time.monotonic()
    for run_id in range(KILLS):
        lines = run_child(path, run_id, rng)
        total_lines += len(lines)
        for line in lines:
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "A" and len(parts) == 4:
                first, last = int(parts[1]), int(parts[2])
                for i, seq in enumerate(range(first, last + 1)):
                    reported[seq] = f"{parts[3]}/{i}"
            elif parts[0] == "K" and len(parts) == 2:
                acked = max(acked, int(parts[1]))
        spool = Spool.open(path, appliance_id="crash", max_bytes=1 << 30, min_free_bytes=0)
        try:
            assert spool.alarms() == [], spool.alarms()
            acc = accounting(path)  # contiguous from the watermark to next_seq
            st = acc["stats"]
            assert st["delivered_seq"] >= acked
            assert st["next_seq"] > max(reported)
            for seq, expect in reported.items():
                if seq <= st["delivered_seq"]:
                    continue
                msg = decode(acc["readings"][seq])
                assert f"{msg.source}/{msg.point}" == expect, (seq, expect)
        finally:
            spool.close()
        if run_id + 1 >= MIN_KILLS and time.monotonic() - t0 > 60:
            break  # a loaded machine: enough kills done, keep the suite bounded
    assert total_lines > MIN_KILLS * 2  # the children really committed work before dying
