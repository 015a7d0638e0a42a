"""THE SIGKILL crash test: a collector+forwarder process killed at random moments, many times.

Every seq the child was told is committed must reach the emulator; duplicates stay
within one in-flight window per kill.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]
KILLS = 16
BATCH = 200
INFLIGHT = 4


def _child(config: dict) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "tests.forwarder.crash_child", json.dumps(config)],
                            cwd=str(ROOT), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_sigkill_many_times_loses_nothing(tmp_path, emulator):
    rng = random.Random(int(os.environ.get("CRASH_SEED", "20261124")))
    log = tmp_path / "committed.log"
    base = {
        "spool": str(tmp_path / "spool.db"), "appliance_id": "crash-app", "log": str(log),
        "endpoint": emulator.grpc_endpoint, "workspace_url": emulator.workspace_url, "table": emulator.table,
        "client_id": emulator.client_id, "client_secret": emulator.client_secret,
        "batch_max_records": BATCH, "max_inflight_batches": INFLIGHT,
    }
    started = time.monotonic()
    for k in range(KILLS):
        proc = _child({**base, "seed": rng.randrange(1 << 30)})
        try:
            # Random moments: during start-up, mid-append, mid-window, while draining.
            time.sleep(rng.uniform(0.4, 1.6))
            assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(10)
            proc.stdout.close()
            proc.stderr.close()
        assert time.monotonic() - started < 90, "crash loop too slow"
    final = _child({**base, "drain": True, "seed": 0, "timeout": 60})
    out, err = final.communicate(timeout=90)
    assert final.returncode == 0, f"{err.decode()[-2000:]}\n--- emulator log ---\n{emulator.log_tail(40)}"
    last = json.loads(out.decode().strip().splitlines()[-1])["last"]

    committed = [tuple(map(int, line.split())) for line in log.read_text().splitlines() if line.strip()]
    assert len(committed) > KILLS  # every run committed something
    lo = min(a for a, _ in committed)
    hi = max(b for _, b in committed)
    assert hi <= last
    led = emulator.table_stats()["appliances"]["crash-app"]
    table = emulator.table_stats()
    # Every committed seq reached the emulator: no gap at all (nothing was dropped, so no markers).
    assert led["min_seq"] <= lo and led["max_seq"] >= hi, (led["min_seq"], led["max_seq"], lo, hi)
    assert led["missing_count"] == 0 and led["unexplained_missing_count"] == 0, led["missing"]
    assert table["unique"] == led["max_seq"] - led["min_seq"] + 1
    # Duplicates: at most one in-flight window (sent or acked-but-not-yet-recorded) per kill.
    window = BATCH * INFLIGHT
    assert table["duplicates"] <= KILLS * window, (table["duplicates"], KILLS * window)
    print(f"crash test: {KILLS} kills, {table['unique']} readings, {table['duplicates']} duplicates "
          f"(bound {KILLS * window}), {time.monotonic() - started:.1f}s")
