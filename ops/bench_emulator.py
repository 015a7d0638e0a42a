"""Benchmark: the real ZeroBus SDK -> the local emulator, records/s end to end.

Runs the same client twice in one go: against an emulator that stores every row
(``--store sqlite``, the default mode) and against one that acks without storing
(``--store none``, the baseline), and prints both rates and their ratio. The
emulator runs as a subprocess (its own core); the SDK client runs here.

    PYTHONPATH=. .venv/bin/python ops/bench_emulator.py [--records 500000] [--batch 2000] [--window 8]

Figures are noisy on a shared machine: compare the two lines of one run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from edge.encode import appliance_prefix, encode_reading, frame  # noqa: E402
from edge.pb.reading_pb2 import Reading  # noqa: E402
from simulators.kit.emulator import Emulator  # noqa: E402
from zerobus.sdk.shared import StreamConfigurationOptions, TableProperties  # noqa: E402
from zerobus.sdk.sync import ZerobusSdk  # noqa: E402


def make_batches(total: int, batch: int, appliances: int) -> list[list[bytes]]:
    """Realistic records (~110-130 bytes): OPC-UA style points, doubles, three timestamps."""
    prefixes = [appliance_prefix(f"bench-{a:02d}") for a in range(appliances)]
    seqs = [0] * appliances
    t0 = 1_790_000_000_000_000
    bodies = [
        encode_reading(source="plc-line-1", protocol="opcua", point=f"ns=2;s=Line1.Station{i % 40}.Temperature",
                       value=20.0 + i * 0.01, source_ts=t0 + i, server_ts=t0 + i + 3, collected_ts=t0 + i + 9,
                       unit="degC", data_type="Double")
        for i in range(batch)
    ]
    out = []
    for b in range(total // batch):
        a = b % appliances
        pre = prefixes[a]
        first = seqs[a]
        out.append([frame(pre, first + i, body) for i, body in enumerate(bodies)])
        seqs[a] += batch
    return out


def run_client(emu: Emulator, batches: list[list[bytes]], window: int) -> float:
    sdk = ZerobusSdk(emu.grpc_endpoint, emu.workspace_url)
    stream = sdk.create_stream(client_id=emu.client_id, client_secret=emu.client_secret,
                               table_properties=TableProperties(emu.table, Reading.DESCRIPTOR),
                               options=StreamConfigurationOptions())
    offsets: list[int] = []
    t0 = time.perf_counter()
    for i, b in enumerate(batches):
        offsets.append(stream.ingest_records_offset(b))
        if i >= window:
            stream.wait_for_offset(offsets[i - window])
    stream.flush()
    elapsed = time.perf_counter() - t0
    stream.close()
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=500_000)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--window", type=int, default=8, help="batches in flight")
    ap.add_argument("--appliances", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--data-dir", help="parent dir for the emulator data dirs (default: system temp)")
    a = ap.parse_args()
    batches = make_batches(a.records, a.batch, a.appliances)
    n = sum(len(b) for b in batches)
    size = sum(len(r) for r in batches[0]) / len(batches[0])
    print(f"{n} records of ~{size:.0f} B in batches of {a.batch}, {a.window} in flight, {os.cpu_count()} cores")
    results: dict[str, list[float]] = {"none": [], "sqlite": []}
    cpu_us: dict[str, list[float]] = {"none": [], "sqlite": []}
    for _ in range(a.rounds):
        for mode in ("none", "sqlite"):
            with Emulator(store=mode, data_dir=a.data_dir and tempfile.mkdtemp(dir=a.data_dir)) as emu:
                cpu0 = emu.stats()["perf"]["process_cpu_s"]  # start-up (imports) is not ingest work
                elapsed = run_client(emu, batches, a.window)
                rows = emu.table_stats()["rows"] if mode == "sqlite" else n
                if rows != n:
                    print(f"!! {mode}: {rows} rows stored, expected {n}")
                results[mode].append(n / elapsed)
                perf = emu.stats().get("perf", {})
                cpu_us[mode].append((perf["process_cpu_s"] - cpu0) * 1e6 / n)
                print(f"  {mode:<6} {n / elapsed:>12,.0f} records/s  ({elapsed:.2f} s)  emulator: {perf}")
    best = {m: max(v) for m, v in results.items()}
    print(f"store=sqlite {best['sqlite']:,.0f} rec/s vs store=none baseline {best['none']:,.0f} rec/s "
          f"-> {best['sqlite'] / best['none']:.0%} of the ack-only rate")
    # Wall-clock rates swing with the machine's load; CPU per record does not.
    per = {m: min(v) for m, v in cpu_us.items()}
    print(f"emulator CPU per record: {per['sqlite']:.2f} us stored, {per['none']:.2f} us ack-only "
          f"-> one free core stores ~{1e6 / per['sqlite']:,.0f} records/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
