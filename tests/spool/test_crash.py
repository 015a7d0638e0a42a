"""SIGKILL at random moments: every commit the child reported survives, seqs stay contiguous."""

import random
import time
from pathlib import Path

from edge.encode import decode
from edge.spool import Spool

from .conftest import accounting, run_crash_child

KILLS = 25
MIN_KILLS = 20


def run_child(path: Path, run_id: int, rng: random.Random) -> list[str]:
    def wait(child) -> list[str]:
        first = child.stdout.readline()  # wait until it is really appending
        assert first, child.stderr.read()
        time.sleep(rng.uniform(0.0, 0.4))  # not a wait for a condition: a random moment to kill at
        return [first]

    return run_crash_child(path, run_id, wait)


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
