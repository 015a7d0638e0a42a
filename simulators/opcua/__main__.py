"""``python -m simulators.opcua --port 4840 --nodes 1000 --rate 500 [--processes N] ...``

With ``--processes N`` the plant runs as N server processes on ports port..port+N-1, each with
``--nodes`` nodes and ``--rate`` changes/s (one Python server saturates a core at ~20k
changes/s). ``--report-dir`` gets ``opcua-sim-<port>.json`` from each process every 2 s and at
exit: produced changes in total and per node, for reconciling produced vs landed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import subprocess
import sys
from pathlib import Path

from .server import SECURITY, SimServer


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m simulators.opcua", description="OPC-UA plant simulator")
    p.add_argument("--host", default="127.0.0.1", help="only 127.0.0.1 is used by the test suite")
    p.add_argument("--port", type=int, default=4840)
    p.add_argument("--nodes", type=int, default=270, help="variables per process (27 per production line)")
    p.add_argument("--rate", type=float, default=100.0, help="value changes per second per process")
    p.add_argument("--security", choices=sorted(SECURITY), default="none")
    p.add_argument("--cert-dir", default=None, help="server certificate/key (generated if absent)")
    p.add_argument("--user", action="append", default=[], help="name:password (repeatable); disables anonymous")
    p.add_argument("--history", type=int, default=1000, help="values kept per node for HistoryRead")
    p.add_argument("--no-history", action="store_true", help="answer HistoryRead with BadHistoryOperationUnsupported")
    p.add_argument("--no-faults", action="store_true")
    p.add_argument("--no-extras", action="store_true", help="no DateTime / array / structure nodes")
    p.add_argument("--plant-limit", type=int, default=2000, help="nodes driven by the plant model; the rest random-walk")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--report-dir", default=None)
    p.add_argument("--duration", type=float, default=0,
                   help="stop changing values after this many seconds, keep serving (0: change until killed)")
    p.add_argument("--hold", type=float, default=0, help="serve initial values only for this many seconds first")
    return p.parse_args(argv)


async def _serve(a: argparse.Namespace) -> None:
    users = dict(u.split(":", 1) for u in a.user)
    sim = SimServer(
        port=a.port, nodes=a.nodes, rate=a.rate, security=a.security, cert_dir=a.cert_dir, users=users,
        history=a.history, history_enabled=not a.no_history, seed=a.seed + a.port, faults=not a.no_faults,
        extras=not a.no_extras, plant_limit=a.plant_limit, hold=a.hold,
    )
    sim.endpoint = f"opc.tcp://{a.host}:{a.port}/sim"
    await sim.start()
    # Every value written allocates objects (DataValue, notification, coroutines). At CPython's
    # default thresholds a process writing ~29k changes/s ran 4,246 young, 385 middle and 15 full
    # collections in 22 s (gc.get_stats()), the full ones over the whole address space and
    # history: 25.4 us of CPU per change; with these thresholds 18.4 us (one process, one client,
    # CPU time from /proc).
    gc.set_threshold(100_000, 20, 20)
    print(f"READY {sim.endpoint} nodes={len(sim.nodes)}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    report = Path(a.report_dir) / f"opcua-sim-{a.port}.json" if a.report_dir else None
    if report:
        report.parent.mkdir(parents=True, exist_ok=True)
    started = loop.time()
    try:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), 0.5 if a.duration else 2.0)
            except asyncio.TimeoutError:
                pass
            if a.duration and loop.time() - started >= a.duration + a.hold and not sim.paused:
                # Stop changing values but keep serving, so every change made can still be collected.
                sim.pause()
                print(f"DONE produced={sim.produced_total}", flush=True)
            if report:
                sim.write_report(report)
    finally:
        sim.pause()
        if report:
            sim.write_report(report)
        await sim.stop()
        print(f"STOPPED produced={sim.produced_total}", flush=True)


def main(argv: list[str] | None = None) -> int:
    a = _args(argv)
    logging.basicConfig(level=logging.WARNING)
    if a.processes <= 1:
        asyncio.run(_serve(a))
        return 0
    base = [x for x in (argv if argv is not None else sys.argv[1:])]
    children = []
    for i in range(1, a.processes):
        args = _strip(base, ("--port", "--processes")) + ["--port", str(a.port + i), "--processes", "1"]
        children.append(subprocess.Popen([sys.executable, "-m", "simulators.opcua", *args]))
    try:
        asyncio.run(_serve(a))
    finally:
        for c in children:
            c.terminate()
        for c in children:
            try:
                c.wait(10)
            except subprocess.TimeoutExpired:
                c.kill()
    return 0


def _strip(argv: list[str], names: tuple[str, ...]) -> list[str]:
    out, skip = [], False
    for x in argv:
        if skip:
            skip = False
            continue
        if x in names:
            skip = True
            continue
        if any(x.startswith(n + "=") for n in names):
            continue
        out.append(x)
    return out


if __name__ == "__main__":
    sys.exit(main())
