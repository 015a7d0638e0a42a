"""Drain benchmark: spool -> Forwarder -> real SDK -> emulator, against a bare-SDK baseline.

    PYTHONPATH=. .venv/bin/python ops/bench_drain.py [--rows 1000000] [--backlog-rows 10000000]
        [--streams 1,2,4] [--batch 5000] [--inflight 4] [--store none|sqlite]

Prints, all measured in the same run against the same emulator process:
- the baseline: the bare SDK pushing pre-framed records from memory (no spool, no framing);
- the forwarder draining a spool of ``--rows`` readings with 1, 2, 4 streams, and its ratio
  to the baseline with the same number of streams;
- CPU spent by the emulator and by this process in each phase (share of one core, and
  microseconds per reading: the load-independent cost), so a phase where the emulator burns
  a whole core is flagged as emulator-bound;
- restart to first ack: a fresh process opens a spool holding ``--backlog-rows`` readings,
  starts the writer and the forwarder; time from process start (and from fork) to the first ack.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

T_PROCESS_START = time.time()

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

APP = "bench-app"
TICK = os.sysconf("SC_CLK_TCK")


def bodies(n_points: int = 64) -> list[bytes]:
    """About 120-byte readings, as an OPC-UA collector would encode them."""
    from edge.encode import encode_reading

    base = 1_763_900_000_000_000
    return [
        encode_reading(source="plc-line3", protocol="opcua", point=f"ns=2;s=Line3.Press{i:02d}.HydraulicPressure",
                       value=180.0 + i / 7, quality="GOOD", status_code=0, source_ts=base + i, server_ts=base + i + 100,
                       collected_ts=base + i + 200, unit="bar", data_type="Double")
        for i in range(n_points)
    ]


def fill_spool(path: Path, rows: int) -> float:
    from edge.spool import Spool

    pool = bodies()
    spool = Spool.open(path, appliance_id=APP, max_bytes=64 << 30, when_full="block", min_free_bytes=0)
    t = time.perf_counter()
    chunk = 50_000
    ts = 1_763_900_000_000_000
    done = 0
    while done < rows:
        n = min(chunk, rows - done)
        spool.append([(ts + done + i, pool[(done + i) & 63]) for i in range(n)])
        done += n
    spool.close()
    return time.perf_counter() - t


def cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


class Phase:
    """Wall time plus CPU seconds of the emulator and of this process."""

    def __init__(self, emu_pid: int):
        self.emu_pid = emu_pid

    def __enter__(self):
        self.t0, self.e0, self.s0 = time.perf_counter(), cpu_of(self.emu_pid), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.t0
        self.emu_cpu = cpu_of(self.emu_pid) - self.e0
        self.self_cpu = time.process_time() - self.s0


def baseline(emu, records_batches: list[list[bytes]], streams: int, inflight: int) -> None:
    """The bare SDK: pre-framed batches from memory, round-robin over streams, window per stream."""
    from zerobus.sdk.shared import StreamConfigurationOptions, TableProperties
    from zerobus.sdk.sync import ZerobusSdk

    from edge.pb.reading_pb2 import Reading

    sdk = ZerobusSdk(emu.grpc_endpoint, emu.workspace_url)
    opts = StreamConfigurationOptions(max_inflight_records=inflight + 1, recovery=False)
    per = [records_batches[i::streams] for i in range(streams)]

    def push(batches):
        s = sdk.create_stream(client_id=emu.client_id, client_secret=emu.client_secret,
                              table_properties=TableProperties(emu.table, Reading.DESCRIPTOR), options=opts)
        offsets = []
        for b in batches:
            offsets.append(s.ingest_records_offset(b))
            if len(offsets) > inflight:
                s.wait_for_offset(offsets[-inflight - 1])
        s.flush()
        s.close()

    threads = [threading.Thread(target=push, args=(p,)) for p in per]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def drain(emu, spool_path: Path, rows: int, streams: int, batch: int, inflight: int) -> dict:
    from edge.config import ZerobusConfig
    from edge.configtypes import ByteSize, Secret
    from edge.forwarder import Forwarder
    from edge.spool import Spool
    from edge.writer import SpoolWriter

    spool = Spool.open(spool_path, appliance_id=APP, max_bytes=64 << 30, when_full="block", min_free_bytes=0)
    last = spool.next_seq - 1
    writer = SpoolWriter(spool)
    cfg = ZerobusConfig(endpoint=emu.grpc_endpoint, workspace_url=emu.workspace_url, table=emu.table,
                        client_id=emu.client_id, client_secret=Secret(emu.client_secret), streams=streams,
                        batch_max_records=batch, batch_max_bytes=ByteSize(8 << 20), max_inflight_batches=inflight)
    fwd = Forwarder(cfg, appliance_id=APP, spool_path=str(spool_path), writer=writer)
    t0 = time.perf_counter()
    fwd.start()
    while writer.call(lambda s: s.watermark()).result(30) < last:
        time.sleep(0.01)
    wall = time.perf_counter() - t0
    st = fwd.state()
    fwd.stop(10)
    writer.close()
    return {"wall": wall, "acked": st["acked_total"], "resent": st["resent_total"], "failures": st["failures_total"]}


def first_ack_child(cfg_json: str) -> int:
    """Runs in a fresh process: open the big spool, start writer + forwarder, report the first ack."""
    c = json.loads(cfg_json)
    t_imports0 = time.time()
    from edge.config import ZerobusConfig
    from edge.configtypes import ByteSize, Secret
    from edge.forwarder import Forwarder
    from edge.spool import Spool
    from edge.writer import SpoolWriter

    t_imported = time.time()
    spool = Spool.open(c["spool"], appliance_id=APP, max_bytes=64 << 30, when_full="block", min_free_bytes=0)
    writer = SpoolWriter(spool)
    t_opened = time.time()
    cfg = ZerobusConfig(endpoint=c["endpoint"], workspace_url=c["workspace_url"], table=c["table"],
                        client_id=c["client_id"], client_secret=Secret(c["client_secret"]),
                        batch_max_records=c["batch"], batch_max_bytes=ByteSize(8 << 20),
                        max_inflight_batches=c["inflight"])
    fwd = Forwarder(cfg, appliance_id=APP, spool_path=c["spool"], writer=writer)
    fwd.start()
    deadline = time.monotonic() + 120
    while fwd.state()["last_ack_ts"] is None and time.monotonic() < deadline:
        time.sleep(0.002)
    t_ack = time.time()
    # A few seconds of steady draining from the big spool (after a 1 s warm-up), for the rate at depth.
    time.sleep(1.0)
    st0, t_rate0 = fwd.state()["acked_total"], time.perf_counter()
    time.sleep(c.get("rate_window", 5.0))
    rate = (fwd.state()["acked_total"] - st0) / (time.perf_counter() - t_rate0)
    fwd.stop(10)
    writer.close()
    print(json.dumps({
        "process_start": T_PROCESS_START, "imports_s": t_imported - t_imports0,
        "open_s": t_opened - t_imported, "first_ack_s": t_ack - T_PROCESS_START,
        "first_ack_wall": t_ack, "rate_at_depth": rate,
    }))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="readings per drain run (default 1M)")
    ap.add_argument("--backlog-rows", type=int, default=10_000_000,
                    help="readings in the spool for the restart-to-first-ack measurement (default 10M; 0 skips)")
    ap.add_argument("--streams", default="1,2,4")
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--inflight", type=int, default=4)
    ap.add_argument("--store", choices=("none", "sqlite"), default="none",
                    help="emulator store (none = ack without storing, the default for throughput)")
    ap.add_argument("--dir", default=None, help="work directory (default: a temp dir, removed)")
    ap.add_argument("--first-ack-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.first_ack_child:
        return first_ack_child(args.first_ack_child)

    from edge.encode import appliance_prefix
    from edge.forwarder import Framer
    from edge.spool import SpoolReader
    from simulators.kit.emulator import Emulator

    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench-drain-"))
    work.mkdir(parents=True, exist_ok=True)
    streams_list = [int(s) for s in args.streams.split(",") if s.strip()]
    emu = Emulator(data_dir=work / "emu", store=args.store)
    emu.start()
    try:
        print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; emulator store={args.store}; "
              f"batches of {args.batch}, {args.inflight} in flight per stream")
        src = work / "src.db"
        fill_s = fill_spool(src, args.rows)
        with SpoolReader(src) as r:
            pooled = r.peek(0, args.rows)
        size = sum(len(b) for _, b in pooled) / len(pooled)
        print(f"spool: {args.rows:,} readings of ~{size:.0f} bytes (body) filled in {fill_s:.1f}s")
        framer = Framer(appliance_prefix(APP))
        framed = framer.frame_rows(pooled)
        del pooled
        batches = [framed[i:i + args.batch] for i in range(0, len(framed), args.batch)]
        pid = emu.proc.pid
        print(f"\n{'phase':34} {'readings/s':>12} {'wall s':>8} {'emu CPU':>8} {'self CPU':>9} "
              f"{'emu us/r':>9} {'self us/r':>10}  note")
        results = {}
        for n in streams_list:
            with Phase(pid) as base:
                baseline(emu, batches, n, args.inflight)
            base_rate = args.rows / base.wall
            print(f"{f'bare SDK from memory, {n} stream(s)':34} {base_rate:12,.0f} {base.wall:8.2f} "
                  f"{base.emu_cpu / base.wall:7.0%} {base.self_cpu / base.wall:8.0%} "
                  f"{base.emu_cpu / args.rows * 1e6:9.2f} {base.self_cpu / args.rows * 1e6:10.2f}  "
                  f"{'emulator-bound' if base.emu_cpu / base.wall > 0.85 else ''}")
            copy = work / f"run{n}.db"
            shutil.copyfile(src, copy)
            with Phase(pid) as ph:
                d = drain(emu, copy, args.rows, n, args.batch, args.inflight)
            rate = args.rows / d["wall"]
            results[n] = (rate, base_rate)
            print(f"{f'forwarder from spool, {n} stream(s)':34} {rate:12,.0f} {d['wall']:8.2f} "
                  f"{ph.emu_cpu / ph.wall:7.0%} {ph.self_cpu / ph.wall:8.0%} "
                  f"{ph.emu_cpu / args.rows * 1e6:9.2f} {ph.self_cpu / args.rows * 1e6:10.2f}  ratio {rate / base_rate:.2f} to bare SDK"
                  f"{', emulator-bound' if ph.emu_cpu / ph.wall > 0.85 else ''}"
                  f"{', resent ' + str(d['resent']) if d['resent'] else ''}")
            copy.unlink()
            for suffix in ("-wal", "-shm", ".seq"):
                Path(str(copy) + suffix).unlink(missing_ok=True)
        del framed, batches
        if args.backlog_rows:
            big = work / "backlog.db"
            fill_s = fill_spool(big, args.backlog_rows)
            print(f"\nbacklog spool: {args.backlog_rows:,} readings, {big.stat().st_size / 1e9:.2f} GB, filled in {fill_s:.0f}s")
            child_cfg = {"spool": str(big), "endpoint": emu.grpc_endpoint, "workspace_url": emu.workspace_url,
                         "table": emu.table, "client_id": emu.client_id, "client_secret": emu.client_secret,
                         "batch": args.batch, "inflight": args.inflight}
            t_fork = time.time()
            out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--first-ack-child", json.dumps(child_cfg)],
                                 capture_output=True, text=True, timeout=300, cwd=str(ROOT),
                                 env=dict(os.environ, PYTHONPATH=str(ROOT)))
            if out.returncode != 0:
                print(out.stderr[-3000:])
                return 1
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"restart with a {args.backlog_rows:,}-reading backlog: first ack {r['first_ack_s']:.2f}s after process "
                  f"start ({r['first_ack_wall'] - t_fork:.2f}s after fork incl. interpreter start; imports "
                  f"{r['imports_s']:.2f}s, spool open {r['open_s']:.2f}s); target <= 2 s: "
                  f"{'met' if r['first_ack_wall'] - t_fork <= 2.0 else 'NOT met'}")
            print(f"drain rate at depth ({args.backlog_rows:,} backlog): {r['rate_at_depth']:,.0f} readings/s")
        best = max(results.values(), key=lambda x: x[0]) if results else None
        if best:
            print(f"\nbest forwarder rate {best[0]:,.0f} readings/s (target 250,000: {'met' if best[0] >= 250_000 else 'NOT met'})")
        return 0
    finally:
        emu.stop()
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
