"""Benchmark: Modbus TCP block reads/s through the collector vs a bare pymodbus client.

Starts ``--servers`` simulator processes (``python -m simulators.modbus``, one
core each at most; ``--engine lean`` by default, because pymodbus' own server
costs ~120-150 us of CPU per request and would be what gets measured), each
serving one device with ``--blocks`` blocks of 125 holding registers. Then, in
this process:

1. baseline: one bare ``AsyncModbusTcpClient`` on one connection reads
   125-register blocks back to back for ``--seconds``;
2. collector: one ``edge.sources.modbus.Source`` per simulator, each with
   ``--connections`` connections, polling every block as fast as it can
   (``poll_interval: 1ms``), decoding every point and spooling changes into a
   real SQLite spool (``report: on_change``; the values are static, so this
   measures the read path, not the spool).

Prints both rates and their ratio (one request in flight per connection is the
protocol's limit, so the gain comes from connections and servers):

    PYTHONPATH=. .venv/bin/python ops/bench_modbus.py [--seconds 5] [--servers 2] [--connections 4] [--blocks 32] [--engine lean]

Figures are noisy on a shared machine: compare the lines of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from pymodbus.client import AsyncModbusTcpClient  # noqa: E402

from edge.configtypes import build  # noqa: E402
from edge.sources.base import SourceContext, SourceStatus  # noqa: E402
from edge.sources.modbus.collector import Config, Source  # noqa: E402
from edge.spool import Spool  # noqa: E402
from edge.writer import SpoolWriter  # noqa: E402


def bench_devices(blocks: int) -> list[dict]:
    # Two points per 125-register block (first and last register) make the planner read it whole.
    points = []
    for i in range(blocks):
        points.append({"name": f"b{i}/first", "table": "holding_registers", "address": i * 125, "type": "uint16"})
        points.append({"name": f"b{i}/last", "table": "holding_registers", "address": i * 125 + 124, "type": "uint16"})
    return [{"device_id": 1, "points": points}]


def proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process used so far, from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return float("nan")


def start_servers(n: int, map_path: Path, engine: str = "lean") -> tuple[list[subprocess.Popen], list[int]]:
    procs, ports = [], []
    for _ in range(n):
        p = subprocess.Popen(
            [sys.executable, "-m", "simulators.modbus", "--map", str(map_path), "--port", "0",
             "--tick", "3600", "--report", "3600", "--engine", engine],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        line = p.stdout.readline()
        ports.append(json.loads(line)["port"])
        procs.append(p)
    return procs, ports


async def baseline(port: int, seconds: float, server_pid: int) -> tuple[float, float, float]:
    """Block reads/s of one bare client on one connection, and CPU us per read here and in the server."""
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=3, retries=0, reconnect_delay=0)
    await client.connect()
    n = 0
    cpu0, srv0 = time.process_time(), proc_cpu_s(server_pid)
    end = time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < end:
        rr = await client.read_holding_registers(0, count=125, device_id=1)
        assert not rr.isError() and len(rr.registers) == 125
        n += 1
    elapsed = time.perf_counter() - start
    cpu, srv = time.process_time() - cpu0, proc_cpu_s(server_pid) - srv0
    client.close()
    return n / elapsed, 1e6 * cpu / max(n, 1), 1e6 * srv / max(n, 1)


async def collector(ports: list[int], devices: list[dict], connections: int, seconds: float, spool_dir: Path,
                    server_pids: list[int]) -> dict:
    spool = Spool.open(spool_dir / "bench.db", appliance_id="bench", max_bytes=1024**3, min_free_bytes=0)
    writer = SpoolWriter(spool)
    sources = []
    for i, port in enumerate(ports):
        cfg = build(Config, {"name": f"bench{i}", "type": "modbus", "host": "127.0.0.1", "port": port,
                             "devices": devices, "connections": connections, "poll_interval": 0.001,
                             "max_gap": 125, "report": "on_change", "timeout": 3}, f"sources[{i}]")
        status = SourceStatus(cfg.name, "modbus", writer.put_state)
        ctx = SourceContext(appliance_id="bench", data_dir=spool_dir, emit=writer.emit, submit=writer.submit,
                            quarantine=writer.quarantine, wait_for_space=writer.wait_for_space_async, status=status)
        sources.append(Source(cfg, ctx))
    tasks = [asyncio.create_task(s.run()) for s in sources]
    await asyncio.sleep(0.5)  # connect and first (spooled) cycle
    reads0 = sum(s.counters["reads_total"] for s in sources)
    cpu0, srv0 = time.process_time(), sum(proc_cpu_s(p) for p in server_pids)
    start = time.perf_counter()
    await asyncio.sleep(seconds)
    elapsed = time.perf_counter() - start
    reads = sum(s.counters["reads_total"] for s in sources) - reads0
    cpu, srv = time.process_time() - cpu0, sum(proc_cpu_s(p) for p in server_pids) - srv0
    errors = sum(s.counters["read_errors_total"] for s in sources)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    writer.close()
    return {"reads_per_s": reads / elapsed, "errors": errors, "client_cpu_us_per_read": 1e6 * cpu / max(reads, 1),
            "server_cpu_us_per_read": 1e6 * srv / max(reads, 1), "cpu_busy": (cpu + srv) / elapsed,
            "blocks_per_cycle": len(sources[0].cfg.blocks), "sources": len(sources)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--servers", type=int, default=2)
    ap.add_argument("--connections", type=int, default=4, help="connections per simulator")
    ap.add_argument("--blocks", type=int, default=32, help="125-register blocks per device")
    ap.add_argument("--engine", choices=("lean", "pymodbus"), default="lean",
                    help="simulator engine: lean (default, cheap per request) or the pymodbus server")
    a = ap.parse_args()
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        import yaml

        devices = bench_devices(a.blocks)
        (tmp / "map.yaml").write_text(yaml.safe_dump({"devices": devices, "plant": {"lines": 1, "seed": 0}}))
        procs, ports = start_servers(a.servers, tmp / "map.yaml", a.engine)
        print(f"simulators: {a.servers} x engine {a.engine}")
        try:
            base, base_cpu, base_srv = asyncio.run(baseline(ports[0], a.seconds, procs[0].pid))
            print(f"baseline  bare pymodbus client, 1 connection, 1 server: {base:10,.0f} block reads/s (125 registers); "
                  f"cpu per read: client {base_cpu:.0f} us, simulator {base_srv:.0f} us")
            res = asyncio.run(collector(ports, devices, a.connections, a.seconds, tmp, [p.pid for p in procs]))
            print(f"collector {res['sources']} source(s) x {a.connections} connections, {res['blocks_per_cycle']} blocks/cycle: "
                  f"{res['reads_per_s']:10,.0f} block reads/s  ({res['errors']} errors)")
            print(f"ratio collector / baseline: {res['reads_per_s'] / base:.2f}x")
            print(f"cpu per block read: collector {res['client_cpu_us_per_read']:.0f} us, simulators "
                  f"{res['server_cpu_us_per_read']:.0f} us; cores busy {res['cpu_busy']:.2f} of {os.cpu_count()} "
                  f"(load average {os.getloadavg()[0]:.1f})")
            print(json.dumps({"baseline_reads_per_s": round(base), "collector_reads_per_s": round(res["reads_per_s"]),
                              "ratio": round(res["reads_per_s"] / base, 2), "servers": a.servers, "engine": a.engine,
                              "connections": a.connections, "errors": res["errors"],
                              "client_cpu_us_per_read": round(res["client_cpu_us_per_read"]),
                              "baseline_client_cpu_us_per_read": round(base_cpu),
                              "server_cpu_us_per_read": round(res["server_cpu_us_per_read"])}))
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
