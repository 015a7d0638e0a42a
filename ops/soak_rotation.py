"""Soak: synthetic ingest through the spool and the forwarder while the emulator rotates every stream.

    PYTHONPATH=. .venv/bin/python ops/soak_rotation.py            # 10 minutes
        [--minutes 2] [--rate 2000] [--lifetime-s 60] [--profile realistic] [--streams 4]

The emulator runs ``--profile <profile> --stream-lifetime-s <lifetime>`` (the server closes
each stream after its lifetime with the close-stream signal, as the real service does on
its own schedule); readings are appended at ``--rate``/s (in 10 commits a second) into a
real spool that a real Forwarder drains over the real SDK. At the end (ingest stopped, the
spool drained) the emulator's accounting of this appliance is checked:

- lost: 0 (every committed seq is in the table or covered by a loss marker, up to the last);
- unexplained gaps: 0 (gaps between seqs the table holds are all covered by loss markers);
- duplicates: at most one stream's window (``max_inflight_batches`` x ``batch_max_records``)
  per rotation the emulator made (0 expected: a graceful close finishes the window).

Prints the figures and exits 1 if a check fails.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

APP = "soak-app"


def ingest(writer, rate: float, stop: threading.Event, out: dict) -> None:
    from edge.encode import encode_reading

    per_tick, i, t_next = max(1, int(rate / 10)), 0, time.monotonic()
    while not stop.is_set():
        now_us = int(time.time() * 1e6)
        rows = [(now_us, encode_reading(source="soak", protocol="synthetic", point=f"line1/m{(i + k) % 50}/temp",
                                        value=float(i + k), collected_ts=now_us, unit="C")) for k in range(per_tick)]
        res = writer.submit(rows).result(60)
        out["first"] = out.get("first") or res.first_seq
        out["last"] = res.last_seq
        out["count"] = out.get("count", 0) + per_tick
        i += per_tick
        t_next += 0.1
        stop.wait(max(0.0, t_next - time.monotonic()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=2000.0, help="readings per second appended to the spool")
    ap.add_argument("--lifetime-s", type=float, default=60.0, help="the emulator's --stream-lifetime-s")
    ap.add_argument("--profile", default="realistic", help="the emulator's --profile (realistic: 175 ms acks, quotas)")
    ap.add_argument("--streams", type=int, default=4, help="zerobus.streams")
    ap.add_argument("--drain-timeout", type=float, default=120.0, help="seconds to drain after ingest stops")
    args = ap.parse_args()
    os.environ.setdefault("RUST_LOG", "warn")

    from edge.config import ZerobusConfig
    from edge.configtypes import Secret
    from edge.forward import Forwarder
    from edge.spool import Spool
    from edge.writer import SpoolWriter
    from simulators.kit.emulator import Emulator

    work = Path(tempfile.mkdtemp(prefix="soak-rotation-"))
    emu = Emulator(data_dir=work / "emu",  # the sqlite store: its ledger is the accounting checked
                   extra_args=["--profile", args.profile, "--stream-lifetime-s", f"{args.lifetime_s:g}"])
    emu.start()
    writer = fwd = None
    try:
        spool = Spool.open(work / "spool.db", appliance_id=APP, max_bytes=4 << 30, when_full="block")
        writer = SpoolWriter(spool)
        cfg = ZerobusConfig(endpoint=emu.grpc_endpoint, workspace_url=emu.workspace_url, table=emu.table,
                            client_id=emu.client_id, client_secret=Secret(emu.client_secret), streams=args.streams)
        fwd = Forwarder(cfg, appliance_id=APP, spool_path=str(work / "spool.db"), writer=writer)
        writer.on_commit = fwd.notify
        fwd.start()
        stop, counts = threading.Event(), {}
        feeder = threading.Thread(target=ingest, args=(writer, args.rate, stop, counts), daemon=True)
        t0 = time.monotonic()
        feeder.start()
        print(f"soak: {args.minutes:g} min, {args.rate:g} readings/s, --profile {args.profile} "
              f"--stream-lifetime-s {args.lifetime_s:g}, streams {args.streams}", flush=True)
        end = t0 + args.minutes * 60
        while time.monotonic() < end and feeder.is_alive():
            time.sleep(min(30.0, max(0.0, end - time.monotonic())))
            st, svc = fwd.state(), emu.stats()["service"]
            print(f"  {time.monotonic() - t0:6.0f}s appended {counts.get('count', 0):,} acked {st['acked_total']:,} "
                  f"state {st['state']} rotations {svc['rotations']}", flush=True)
        stop.set()
        feeder.join(60)
        last = counts["last"]
        deadline = time.monotonic() + args.drain_timeout
        while writer.call(lambda s: s.watermark()).result(30) < last and time.monotonic() < deadline:
            time.sleep(0.1)
        drained = writer.call(lambda s: s.watermark()).result(30) >= last
        st = fwd.state()
        fwd.stop(15)
        svc, table = emu.stats()["service"], emu.table_stats()
        led = table["appliances"].get(APP, {})
        window = cfg.max_inflight_batches * cfg.batch_max_records
        top = led.get("max_seq") or 0
        lost = max(0, last - top) + (led.get("unexplained_missing_count") or 0) + max(0, (led.get("min_seq") or 0) - counts["first"])
        rotations = svc["rotations"]
        checks = {
            "drained": drained,
            "0 lost": lost == 0,
            "0 unexplained gaps": (led.get("unexplained_missing_count") or 0) == 0,
            "duplicates <= one window per rotation": table["duplicates"] <= rotations * window,
        }
        print(f"appended {counts['count']:,} readings (seqs {counts['first']}..{last}) in {args.minutes:g} min; "
              f"drained: {drained}")
        print(f"table: seqs {led.get('min_seq')}..{top}, rows {table['rows']:,}, duplicates {table['duplicates']:,}, "
              f"missing {led.get('missing_count')}, unexplained {led.get('unexplained_missing_count')}, "
              f"loss markers {led.get('loss_markers')}")
        print(f"rotations by the server {rotations}, streams opened {table['streams_opened']}, forwarder: rotations "
              f"{st['rotations_total']}, failures {st['failures_total']}, resent {st['resent_total']}, "
              f"egress cuts {st['egress_cuts_total']}; bound: {window:,} duplicates per rotation")
        print(f"lost {lost}; " + "; ".join(f"{k}: {'ok' if v else 'FAILED'}" for k, v in checks.items()))
        return 0 if all(checks.values()) else 1
    finally:
        if writer is not None:
            writer.close()
        emu.stop()


if __name__ == "__main__":
    sys.exit(main())
