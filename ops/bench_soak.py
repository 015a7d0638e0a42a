"""Soak: live ingest -> spool -> forwarder -> emulator that rotates streams, then count what arrived.

    PYTHONPATH=. .venv/bin/python ops/bench_soak.py [--minutes 10] [--lifetime-s 60] [--rate 5000]
        [--profile realistic] [--set key=value ...]

A writer appends ``--rate`` readings/s to a spool for ``--minutes`` while the forwarder drains it
to an emulator that stores every row (``--store sqlite``) under ``--profile`` with streams closed
by the server every ``--lifetime-s`` (close_stream_signal). At the end, once the forwarder has
caught up, it prints from the emulator's /stats: readings sent and stored, seqs missing and
unexplained (not covered by a loss marker), duplicates, rotations and close signals, so the
issue's figure can be checked: 0 lost, 0 unexplained gaps, duplicates at most one window per
rotation (0 when the close is graceful).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ops.bench_drain import APP, bodies, forwarder_classes, parse_sets  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--lifetime-s", type=float, default=60.0, help="server closes each stream after this")
    ap.add_argument("--rate", type=int, default=5000, help="readings/s appended to the spool")
    ap.add_argument("--profile", default="realistic", choices=("none", "realistic"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra zerobus config field")
    ap.add_argument("--dir", default=None, help="work directory (default: a temp dir, removed)")
    args = ap.parse_args()
    os.environ.setdefault("RUST_LOG", "warn")

    from edge.config import ZerobusConfig
    from edge.configtypes import Secret
    from edge.spool import Spool
    from edge.writer import SpoolWriter
    from simulators.kit.emulator import Emulator

    Forwarder, _ = forwarder_classes()
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    emu = Emulator(data_dir=work / "emu", extra_args=["--profile", args.profile, "--stream-lifetime-s", str(args.lifetime_s)])
    emu.start()
    try:
        spool = Spool.open(work / "spool.db", appliance_id=APP, max_bytes=8 << 30, when_full="block", min_free_bytes=0)
        writer = SpoolWriter(spool)
        cfg = ZerobusConfig(endpoint=emu.grpc_endpoint, workspace_url=emu.workspace_url, table=emu.table,
                            client_id=emu.client_id, client_secret=Secret(emu.client_secret), **parse_sets(args.set))
        fwd = Forwarder(cfg, appliance_id=APP, spool_path=str(work / "spool.db"), writer=writer)
        fwd.start()
        pool = bodies()
        tick, sent, last_seq = 0.1, 0, -1
        t0 = time.monotonic()
        end = t0 + args.minutes * 60
        next_report = t0 + 30
        while time.monotonic() < end:
            due = int((time.monotonic() - t0) * args.rate) - sent
            if due > 0:
                ts = int(time.time() * 1e6)
                res = writer.submit([(ts, pool[(sent + i) & 63]) for i in range(due)]).result(30)
                last_seq = res.last_seq
                sent += due
            if time.monotonic() >= next_report:
                svc = emu.stats()["service"]
                print(f"{time.monotonic() - t0:6.0f}s sent {sent:,} acked {fwd.state()['acked_total']:,} "
                      f"rotations {svc['rotations']}", flush=True)
                next_report += 30
            time.sleep(tick)
        deadline = time.monotonic() + 120
        while writer.call(lambda s: s.watermark()).result(30) < last_seq and time.monotonic() < deadline:
            time.sleep(0.1)
        caught_up = time.monotonic() - end
        st = fwd.state()
        fwd.stop(10)
        writer.close()
        stats = emu.stats()
        table, svc = stats["tables"][emu.table], stats["service"]
        app = table["appliances"].get(APP, {})
        print(f"\nsoak: {args.minutes:g} min at {args.rate:,}/s, --profile {args.profile}, streams closed every "
              f"{args.lifetime_s:g} s; forwarder caught up {caught_up:.1f} s after ingest stopped")
        print(f"sent {sent:,} readings (last seq {last_seq}); stored rows {table['rows']:,}, unique {table['unique']:,}, "
              f"duplicates {table['duplicates']:,}")
        print(f"missing {app.get('missing_count')}, unexplained {app.get('unexplained_missing')}; "
              f"rotations {svc['rotations']}, close signals {svc['close_signals']}, streams opened {table['streams_opened']}; "
              f"forwarder resent {st['resent_total']:,}, failures {st['failures_total']}")
        ok = app.get("unexplained_missing") == [] and table["unique"] >= sent
        print("verdict: " + ("0 lost, 0 unexplained gaps" if ok else "LOSS OR GAPS: see above"))
        return 0 if ok else 1
    finally:
        emu.stop()
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
