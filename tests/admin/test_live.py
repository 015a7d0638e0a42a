"""gunicorn serving the admin page while a writer ingests at full rate into the same spool.

Prints the ingest rate without and with page load (same run, interleaved) and
asserts only generous bounds: the machine is shared, timings are noisy.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from edge.admin.server import serve
from edge.configtypes import ConfigError
from edge.encode import encode_reading
from edge.spool import Spool
from edge.writer import SpoolWriter

from tests.admin.browser import login_cookie
from tests.admin.conftest import ENV, PASSWORDS, forwarder_state, source_state
from tests.admin.live import ROOT, Gunicorn, Ingest

PHASE_S = 2.0
MiB = 1024 * 1024


def write_config(tmp: Path, **admin) -> Path:
    path = tmp / "edge.yaml"
    path.write_text(yaml.safe_dump({
        "appliance_id": "load-1", "data_dir": str(tmp),
        "spool": {"path": str(tmp / "spool.db"), "max_bytes": "2GiB", "min_free_bytes": "1MiB"},
        "zerobus": {"endpoint": "http://127.0.0.1:9", "client_secret": "never-shown-secret"},
        "admin": {"secure_cookies": False, **admin},
    }))
    return path


def test_serve_refuses_without_password_and_builds_a_safe_command_line(tmp_path, monkeypatch):
    path = write_config(tmp_path)
    for var in ("EDGE_ADMIN_PASSWORD", "EDGE_ADMIN_PASSWORD_FILE"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ConfigError, match="no admin password"):
        serve(str(path), exec_=False)
    monkeypatch.setenv("EDGE_ADMIN_PASSWORD", PASSWORDS["admin"])
    argv = serve(str(path), "127.0.0.1:9999", exec_=False)
    assert argv[-1] == "edge.admin:create_app()" and "127.0.0.1:9999" in argv
    assert "--no-control-socket" in argv and "--timeout" in argv
    fmt = argv[argv.index("--access-logformat") + 1]
    assert "%(U)s" in fmt and "%(r)s" not in fmt and "%(q)s" not in fmt and "{" not in fmt  # no query, no headers
    assert PASSWORDS["admin"] not in " ".join(argv)


def test_page_under_load_does_not_slow_ingest_and_the_wal_stays_bounded(tmp_path):
    cfg_path = write_config(tmp_path)
    spool = Spool.open(tmp_path / "spool.db", appliance_id="load-1", max_bytes=2 * 1024**3, min_free_bytes=MiB)
    writer = SpoolWriter(spool, sample_interval_s=1.0)
    writer.put_state("forwarder", "main", forwarder_state(state="streaming", reason="", egress_cuts=[])).result(10)
    writer.put_state("source", "synthetic", source_state("synthetic", type="synthetic")).result(10)
    body = encode_reading(source="synthetic", protocol="synthetic", point="p/1", value=1.5, collected_ts=1)

    def batch(n):
        ts = time.time_ns() // 1000
        return [(ts, body)] * n

    gun = Gunicorn(cfg_path, ENV, workers=2, log=tmp_path / "gunicorn.log")
    ingest = Ingest(writer, batch, batch=1000, keep=50_000)
    stop_wal = threading.Event()
    wal_max = [0]

    def watch_wal():
        while not stop_wal.wait(0.1):
            try:
                wal_max[0] = max(wal_max[0], os.path.getsize(f"{tmp_path / 'spool.db'}-wal"))
            except OSError:
                pass

    watcher = threading.Thread(target=watch_wal, daemon=True)
    try:
        cookie = login_cookie("127.0.0.1", gun.port, "viewer", PASSWORDS["viewer"])
        ingest.start()
        watcher.start()
        time.sleep(1.0)  # warm up: first samples, page caches

        def phase(interval: float | None, threads: int = 3) -> tuple[float, dict]:
            """Ingest rate over PHASE_S, with page load from another process unless ``interval`` is None."""
            proc = None
            if interval is not None:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "tests.admin.live", str(gun.port), cookie, str(PHASE_S), str(interval),
                     str(threads)], stdout=subprocess.PIPE, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
            t0 = time.monotonic()
            time.sleep(PHASE_S)
            t1 = time.monotonic()
            result = {"n": 0, "lat": [], "errors": []}
            if proc is not None:
                out, _ = proc.communicate(timeout=60)
                result = json.loads(out.decode().strip().splitlines()[-1])
            return ingest.rows_between(t0, t1) / (t1 - t0), result

        # Alternate idle and loaded phases so drift in the shared machine's load hits both alike.
        rates, loads = {}, {}
        plan = [("idle", None), ("operators", 1.0)] * 3 + [("stress", 0.0), ("idle", None)]
        for i, (name, interval) in enumerate(plan):
            rate, load = phase(interval)
            rates.setdefault(name, []).append(rate)
            loads.setdefault(name, {"n": 0, "lat": [], "errors": []})
            for k in ("lat", "errors"):
                loads[name][k] += load[k]
            loads[name]["n"] += load["n"]
        stall = max(ingest.latencies)
    finally:
        ingest.stop()
        stop_wal.set()
        gun.stop()
        writer.close()

    baseline = statistics.median(rates["idle"])
    operators = statistics.median(rates["operators"])
    stress = rates["stress"][0]
    for name, rate in (("operators", operators), ("stress", stress)):
        lat = sorted(loads[name]["lat"])
        p50 = lat[len(lat) // 2] * 1000 if lat else float("nan")
        p99 = lat[int(len(lat) * 0.99)] * 1000 if lat else float("nan")
        print(f"\n{name}: {len(lat)} page requests, p50 {p50:.1f} ms, p99 {p99:.1f} ms; "
              f"ingest {rate:,.0f} rows/s = {rate / baseline:.2f} x idle")
    print(f"idle ingest: {', '.join(f'{r:,.0f}' for r in rates['idle'])} rows/s (median {baseline:,.0f}); "
          f"operators phases: {', '.join(f'{r:,.0f}' for r in rates['operators'])}; "
          f"slowest 1000-row commit {stall * 1000:.0f} ms; WAL max {wal_max[0] / MiB:.1f} MiB")
    assert not ingest.errors, ingest.errors[:3]
    for name in ("operators", "stress"):
        assert not loads[name]["errors"], loads[name]["errors"][:5]
    assert loads["operators"]["n"] >= 15 and loads["stress"]["n"] >= 20
    assert baseline > 1000
    # Generous bounds (2 cores shared with other test runs): what they catch is a page that blocks
    # the writer (a lock or a pinned snapshot shows as stalls and a collapsed rate), not CPU sharing.
    assert operators > 0.3 * baseline
    assert stress > 0.1 * baseline
    assert stall < 5.0
    assert wal_max[0] < 96 * MiB  # the writer checkpoints at 16 MiB; readers must never pin it
    log = gun.log_tail(1_000_000)
    assert "Traceback" not in log
    assert PASSWORDS["viewer"] not in log and "edge_admin=" not in log
