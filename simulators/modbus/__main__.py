"""``python -m simulators.modbus --port 5020 --map simulators/modbus/plant_map.yaml``

Serves the map's registers on 127.0.0.1, driven by the plant model, and prints
one JSON line per event on stdout: ``listening`` (with the port, useful with
``--port 0``), ``fault`` when a scheduled fault starts or ends, ``report`` every
``--report`` seconds (requests served, exception responses, register updates),
and ``summary`` on exit.

Schedules (seconds since start, END optional = until exit):

- ``--offline DEV:START[-END]``          device id stops answering (requests time out)
- ``--exception DEV:CODE:START[-END]``   device answers every request with exception CODE
- ``--fault TARGET:KIND:START[-END]``     plant fault (stuck | out_of_range | offline) on a
  machine (``line1/press1``) or signal (``line1/press1/temperature``)
- ``--down START-END``                  the whole endpoint stops listening (connection refused)
- ``--register-fault DEV:TABLE:ADDR:KIND:START[-END]``  a read covering one register (PDU address) gets
  exception KIND (a number), or the server closes (``close``) / resets (``reset``) the connection, or
  never answers (``silent``); e.g. ``1:holding_registers:29:close:0``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from pathlib import Path

from simulators.modbus.server import PlantModbusServer, load_map
from simulators.plant import Plant


def _span(text: str) -> tuple[float, float | None]:
    start, _, end = text.partition("-")
    return float(start), (float(end) if end else None)


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m simulators.modbus", description=__doc__.split("\n\n")[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--map", default=str(Path(__file__).with_name("plant_map.yaml")),
                    help="register map YAML (devices + plant); default: the plant map the sample config reads")
    ap.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=5020, help="TCP port; 0 picks a free one (printed)")
    ap.add_argument("--seed", type=int, help="plant seed (overrides the map)")
    ap.add_argument("--lines", type=int, help="plant lines (overrides the map)")
    ap.add_argument("--tick", type=float, default=0.1, help="seconds between register updates")
    ap.add_argument("--speed", type=float, default=1.0, help="plant seconds per wall-clock second")
    ap.add_argument("--offline", action="append", default=[], metavar="DEV:START[-END]")
    ap.add_argument("--exception", action="append", default=[], metavar="DEV:CODE:START[-END]")
    ap.add_argument("--fault", action="append", default=[], metavar="TARGET:KIND:START[-END]")
    ap.add_argument("--down", action="append", default=[], metavar="START-END")
    ap.add_argument("--register-fault", action="append", default=[], metavar="DEV:TABLE:ADDR:KIND:START[-END]")
    ap.add_argument("--engine", choices=("pymodbus", "lean"), default="pymodbus",
                    help="pymodbus server (default) or the lean read-only engine for load tests")
    ap.add_argument("--report", type=float, default=5.0, help="seconds between report lines")
    ap.add_argument("--duration", type=float, help="exit after this many seconds")
    return ap.parse_args(argv)


def _emit(event: str, **fields) -> None:
    print(json.dumps({"event": event, "ts": round(time.time(), 3), **fields}), flush=True)


async def _schedule(sim: PlantModbusServer, actions: list[tuple[float, str, tuple]]) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    for at, what, args in sorted(actions, key=lambda a: a[0]):
        await asyncio.sleep(max(0.0, at - (loop.time() - start)))
        if what == "offline":
            sim.set_offline(*args)
        elif what == "exception":
            sim.set_exception(*args)
        elif what == "register_fault":
            sim.set_register_fault(*args)
        elif what == "down":
            await sim.stop()
        elif what == "up":
            await sim.start()
        _emit("fault", action=what, args=list(args), at=at)


async def main(argv: list[str] | None = None) -> int:
    a = _args(argv)
    cfg, plant_opts = load_map(a.map)
    plant = Plant(lines=a.lines or plant_opts.get("lines", 3), seed=a.seed if a.seed is not None else plant_opts.get("seed", 0))
    actions: list[tuple[float, str, tuple]] = []
    for spec in a.offline:
        dev, span = spec.split(":", 1)
        start, end = _span(span)
        actions.append((start, "offline", (int(dev), True)))
        if end is not None:
            actions.append((end, "offline", (int(dev), False)))
    for spec in a.exception:
        dev, code, span = spec.split(":", 2)
        start, end = _span(span)
        actions.append((start, "exception", (int(dev), int(code, 0))))
        if end is not None:
            actions.append((end, "exception", (int(dev), None)))
    for spec in a.register_fault:
        dev, table, addr, kind, span = spec.split(":", 4)
        start, end = _span(span)
        fault = kind if kind in ("close", "reset", "silent") else int(kind, 0)
        actions.append((start, "register_fault", (int(dev), table, int(addr, 0), fault)))
        if end is not None:
            actions.append((end, "register_fault", (int(dev), table, int(addr, 0), None)))
    for spec in a.down:
        start, end = _span(spec)
        actions.append((start, "down", ()))
        actions.append((end if end is not None else start + 1, "up", ()))
    for spec in a.fault:
        target, kind, span = spec.split(":", 2)
        start, end = _span(span)
        plant.inject(target, kind, start * a.speed, None if end is None else end * a.speed)

    sim = PlantModbusServer(cfg, plant, host=a.host, port=a.port, speed=a.speed, engine=a.engine)
    sim.tick(0.0)
    port = await sim.start()
    _emit("listening", host=a.host, port=port, devices=sim.store.devices, points=len(sim.points),
          plant_points=len(sim.bound), plant_faults=[f.__dict__ for f in plant.faults])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(sim.run_plant(a.tick)), asyncio.create_task(_schedule(sim, actions))]

    async def reporter():
        while True:
            await asyncio.sleep(a.report)
            _emit("report", **sim.report())

    tasks.append(asyncio.create_task(reporter()))
    try:
        await asyncio.wait_for(stop.wait(), a.duration)
    except asyncio.TimeoutError:
        pass
    for t in tasks:
        t.cancel()
    await sim.stop()
    _emit("summary", **sim.report())
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
