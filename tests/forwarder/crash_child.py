"""Child of the SIGKILL crash test: append synthetic readings and forward them, until killed.

Usage: python -m tests.forwarder.crash_child CONFIG_JSON

Every committed AppendResult is written to the log file as ``first last`` and
flushed at once, so the parent knows exactly which seqs were promised durable.
With ``"drain": true`` it appends nothing and exits 0 once everything is delivered.
"""

from __future__ import annotations

import json
import random
import sys
import time

from edge.config import ZerobusConfig
from edge.configtypes import ByteSize, Duration, Secret
from edge.encode import encode_reading
from edge.forward import Forwarder
from edge.spool import Spool
from edge.writer import SpoolWriter


def main() -> int:
    c = json.loads(sys.argv[1])
    spool = Spool.open(c["spool"], appliance_id=c["appliance_id"], max_bytes=256 << 20, when_full="block")
    writer = SpoolWriter(spool)
    cfg = ZerobusConfig(
        endpoint=c["endpoint"], workspace_url=c["workspace_url"], table=c["table"],
        client_id=c["client_id"], client_secret=Secret(c["client_secret"]),
        batch_max_records=c["batch_max_records"], batch_max_bytes=ByteSize(1 << 20),
        max_inflight_batches=c["max_inflight_batches"], ack_timeout=Duration(5),
        reconnect_initial=Duration(0.05), reconnect_max=Duration(0.5),
    )
    fwd = Forwarder(cfg, appliance_id=c["appliance_id"], spool_path=c["spool"], writer=writer)
    fwd.start()
    if c.get("drain"):
        deadline = time.monotonic() + c.get("timeout", 60)
        last = writer.call(lambda s: s.next_seq - 1).result(10)
        while writer.call(lambda s: s.watermark()).result(10) < last:
            if time.monotonic() > deadline:
                print(f"drain timed out: {fwd.state()}", file=sys.stderr)
                return 1
            time.sleep(0.05)
        fwd.stop(10)
        writer.close()
        print(json.dumps({"last": last}))
        return 0
    rng = random.Random(c["seed"])
    with open(c["log"], "a", buffering=1) as log:
        i = 0
        while True:
            n = rng.randint(20, 400)
            items = [(1_700_000_000_000_000 + i + k,
                      encode_reading(source="crash", protocol="synthetic", point=f"p{(i + k) % 13}", value=i + k))
                     for k in range(n)]
            i += n
            res = writer.submit(items).result(30)
            log.write(f"{res.first_seq} {res.last_seq}\n")
            log.flush()
            time.sleep(rng.random() * 0.01)


if __name__ == "__main__":
    sys.exit(main())
