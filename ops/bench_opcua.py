"""OPC-UA throughput: simulators (several processes) -> collector -> real spool, against a bare asyncua client.

    PYTHONPATH=. .venv/bin/python ops/bench_opcua.py --processes 3 --nodes 10000 --rate 20000 --seconds 15

Runs, against the same simulator processes in the same run:
  1. baseline: a bare asyncua client (iterator mode, unbounded queue) counting data-change
     notifications, no mapping, no spooling;
  2. the collector (one edge.sources.opcua Source per server, one asyncio loop, as `edge run`
     does) writing every reading through SpoolWriter into a real SQLite spool.
Prints changes/s produced by the simulators (from their reports), taken by each client, and the
ratio collector/baseline. On a 2-core machine the simulators compete with the client for CPU:
the figures are what this machine did, not a property of the code alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from asyncua import Client, ua  # noqa: E402

from edge.configtypes import build  # noqa: E402
from edge.sources.base import SourceContext, SourceStatus  # noqa: E402
from edge.sources.opcua import Config, Source  # noqa: E402
from edge.spool import Spool  # noqa: E402
from edge.writer import SpoolWriter  # noqa: E402
from simulators.opcua.server import free_port  # noqa: E402


def produced(report_dir: Path) -> int:
    total = 0
    for f in report_dir.glob("opcua-sim-*.json"):
        try:
            total += json.loads(f.read_text())["produced_total"]
        except (OSError, ValueError, KeyError):
            pass
    return total


async def wait_produced_change(report_dir: Path, seconds: float) -> tuple[int, int]:
    """Produced totals at the start and end of a window (reports are written every 2 s)."""
    a = produced(report_dir)
    await asyncio.sleep(seconds)
    return a, produced(report_dir)


async def baseline(endpoints: list[str], nodes: int, seconds: float, publishing_ms: float) -> tuple[float, float]:
    count = 0
    clients, tasks = [], []

    async def consume(sub) -> None:
        nonlocal count
        async for _ in sub:
            count += 1

    for ep in endpoints:
        c = Client(ep, timeout=60, watchdog_intervall=30)  # busy simulators answer probes late
        await c.connect()
        clients.append(c)
        ns = await c.get_namespace_index("urn:zerobus-edge:opcua-sim:plant")
        ids = await _node_ids(c, ns, nodes)
        sub = await c.create_subscription(publishing_ms, None, queue_maxsize=0)  # unbounded: never drop
        for i in range(0, len(ids), 1000):
            res = await sub.subscribe_data_change([c.get_node(n) for n in ids[i:i + 1000]], queuesize=10,
                                                  sampling_interval=0)
            bad = [r for r in res if isinstance(r, ua.StatusCode)]
            assert not bad, bad[:3]
        tasks.append(asyncio.create_task(consume(sub)))
    await asyncio.sleep(3)  # initial values and warm-up
    c0, t0, cpu0 = count, time.monotonic(), time.process_time()
    await asyncio.sleep(seconds)
    rate = (count - c0) / (time.monotonic() - t0)
    cpu = (time.process_time() - cpu0) / (time.monotonic() - t0)
    for t in tasks:
        t.cancel()
    for c in clients:
        try:
            await asyncio.wait_for(c.disconnect(), 10)
        except Exception:  # noqa: BLE001
            pass
    return rate, cpu


async def _node_ids(client: Client, ns: int, nodes: int) -> list[str]:
    from simulators.plant import Plant
    from simulators.opcua.server import SIGNALS_PER_LINE

    plant = Plant(lines=max(1, -(-nodes // SIGNALS_PER_LINE)), seed=0)
    return [f"ns={ns};s=" + s.path.replace("/", ".") for s in plant.signals[:nodes]]


async def collector(endpoints: list[str], nodes: int, seconds: float, publishing_ms: float, tmp: Path):
    spool = Spool.open(tmp / "spool.db", appliance_id="bench", max_bytes=8 * 1024**3, when_full="block",
                       min_free_bytes=0)
    writer = SpoolWriter(spool)
    sources, tasks, statuses = [], [], []
    for i, ep in enumerate(endpoints):
        name = f"opcua{i}"
        status = SourceStatus(name, "opcua", writer.put_state)
        statuses.append(status)
        ctx = SourceContext(appliance_id="bench", data_dir=tmp / name, emit=writer.emit, submit=writer.submit,
                            quarantine=writer.quarantine, wait_for_space=writer.wait_for_space_async, status=status)
        cfg = build(Config, {
            "name": name, "type": "opcua", "endpoint": ep, "timeout": 60, "watchdog_interval": 30, "read_units": False,
            "groups": [{"name": "all", "publishing_interval": f"{publishing_ms}ms", "sampling_interval": 0,
                        "queue_size": 10, "folders": [{"root": "Plant"}]}],
        }, name)
        src = Source(cfg, ctx)
        sources.append(src)
        tasks.append(asyncio.create_task(src.run()))
    end = time.monotonic() + 300
    while not all(s.data["state"] == "running" for s in statuses):
        if time.monotonic() > end:
            raise SystemExit(f"collector did not start: {[s.data['detail'] for s in statuses]}")
        await asyncio.sleep(0.2)
    await asyncio.sleep(3)

    def total() -> int:
        return sum(s.data["readings_total"] for s in statuses)

    def notified() -> int:
        return sum(s.stats["notifications"] for s in sources)

    c0, n0, g0, t0, cpu0 = total(), notified(), writer.groups, time.monotonic(), time.process_time()
    await asyncio.sleep(seconds)
    rate = (total() - c0) / (time.monotonic() - t0)
    cpu = (time.process_time() - cpu0) / (time.monotonic() - t0)
    groups = writer.groups - g0
    print(f"collector: {notified() - n0} notifications taken, {total() - c0} readings committed in {groups} "
          f"spool transactions ({(total() - c0) / max(groups, 1):.0f} readings each)", flush=True)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    writer.close()
    size = (tmp / "spool.db").stat().st_size
    return rate, cpu, sum(s.stats["duplicates_dropped"] for s in sources), size


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--processes", type=int, default=3)
    p.add_argument("--nodes", type=int, default=10_000, help="nodes per simulator process")
    p.add_argument("--rate", type=float, default=20_000, help="changes/s per simulator process")
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--publishing-ms", type=float, default=500)
    p.add_argument("--only", choices=("baseline", "collector"), help="run one side only (profiling)")
    a = p.parse_args()
    logging.basicConfig(level=logging.ERROR)
    tmp = Path(tempfile.mkdtemp(prefix="bench-opcua-"))
    reports = tmp / "reports"
    port = free_port()
    while any(_busy(port + i) for i in range(a.processes)):
        port = free_port()
    sim = subprocess.Popen(
        [sys.executable, "-m", "simulators.opcua", "--port", str(port), "--nodes", str(a.nodes), "--rate", str(a.rate),
         "--processes", str(a.processes), "--no-extras", "--no-faults", "--plant-limit", "0", "--history", "10",
         "--report-dir", str(reports)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        # Lines come through a thread: a simulator that never says READY must not hang the bench.
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(ln) for ln in iter(sim.stdout.readline, "")] + [lines.put("")],
                         daemon=True).start()
        ready = 0
        t_end = time.monotonic() + 600
        while ready < a.processes:
            try:
                line = lines.get(timeout=max(0.1, t_end - time.monotonic()))
            except queue.Empty:
                raise SystemExit(f"simulators did not start: {ready} of {a.processes} ready") from None
            if not line:
                raise SystemExit("simulator exited early")
            if line.startswith("READY"):
                ready += 1
        endpoints = [f"opc.tcp://127.0.0.1:{port + i}/sim" for i in range(a.processes)]
        print(f"{a.processes} simulator processes x {a.nodes} nodes x {a.rate:g} changes/s target "
              f"({a.processes * a.rate:g}/s total); {os.cpu_count()} CPUs", flush=True)

        async def run():
            t0, p0 = time.monotonic(), produced(reports)
            b_rate = b_cpu = c_rate = c_cpu = dup = size = 0
            if a.only != "collector":
                b_rate, b_cpu = await baseline(endpoints, a.nodes, a.seconds, a.publishing_ms)
            p1, t1 = produced(reports), time.monotonic()
            if a.only != "baseline":
                c_rate, c_cpu, dup, size = await collector(endpoints, a.nodes, a.seconds, a.publishing_ms, tmp)
            p2, t2 = produced(reports), time.monotonic()
            return (b_rate, b_cpu, (p1 - p0) / (t1 - t0)), (c_rate, c_cpu, (p2 - p1) / (t2 - t1), dup, size)

        (b_rate, b_cpu, b_prod), (c_rate, c_cpu, c_prod, dup, size) = asyncio.run(run())
        print(f"baseline  bare asyncua client (count only): {b_rate:9.0f} changes/s  client CPU {b_cpu:4.0%}  "
              f"(simulators produced ~{b_prod:.0f}/s meanwhile)")
        print(f"collector into the spool (synchronous=FULL): {c_rate:9.0f} readings/s client CPU {c_cpu:4.0%}  "
              f"(simulators produced ~{c_prod:.0f}/s meanwhile)")
        print(f"ratio collector / baseline: {c_rate / b_rate if b_rate else float('nan'):.2f}; "
              f"duplicates dropped: {dup}; spool file {size / 1e6:.0f} MB")
        # CPU per reading of this process (asyncua decode + mapping + encode + the writer thread's
        # commits): what one core could take if the simulators did not need the same CPUs.
        if c_rate and c_cpu:
            per = c_cpu / c_rate
            print(f"collector CPU per reading: {per * 1e6:.1f} us -> ~{1 / per:.0f} readings/s per fully used core; "
                  f"bare client: {b_cpu / b_rate * 1e6 if b_rate else float('nan'):.1f} us per notification")
        target = 50_000
        verdict = "meets" if c_rate >= target else "DOES NOT meet"
        print(f"{verdict} the {target}/s target on this machine")
        return 0
    finally:
        sim.terminate()
        try:
            sim.wait(30)
        except subprocess.TimeoutExpired:
            sim.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def _busy(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


if __name__ == "__main__":
    sys.exit(main())
