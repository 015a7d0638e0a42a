"""python -m simulators.databricks --port 8091 --store <emulator data dir>/store.sqlite --table main.edge.readings"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from edge.schema import ddl
from simulators.databricks.server import Workspace, serve


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m simulators.databricks", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8091)
    p.add_argument("--data-dir", default="./databricks-sim-data", help="token key, registered tables and grants")
    p.add_argument("--store", default=None, help="the ZeroBus emulator's store.sqlite: rows SELECTs read")
    p.add_argument("--table", action="append", default=[], help="register a table with our schema at start")
    p.add_argument("--warehouse-id", default="test-warehouse")
    p.add_argument("--client-id", default=None, help="accept only this OAuth client (default: any)")
    p.add_argument("--client-secret", default=None)
    p.add_argument("--table-type", default="MANAGED", help="what tables report (EXTERNAL to test the check)")
    p.add_argument("--format", default="DELTA", help="data_source_format tables report")
    p.add_argument("--token-upstream", default=None,
                   help="relay ZeroBus token requests (with authorization_details) to this URL, e.g. the emulator's "
                        "http://127.0.0.1:PORT/oidc/v1/token")
    args = p.parse_args(argv)
    ws = Workspace(store=args.store, data_dir=Path(args.data_dir), client_id=args.client_id,
                   client_secret=args.client_secret, warehouse_id=args.warehouse_id, table_type=args.table_type,
                   data_source_format=args.format, token_upstream=args.token_upstream)
    for t in args.table:
        if t.lower() not in ws.tables:
            ws.register(t, ddl(t, header=False))
    server = serve(ws, args.host, args.port)
    signal.signal(signal.SIGTERM, lambda *_: server.shutdown())
    print(f"test workspace on http://{args.host}:{server.server_address[1]} (warehouse {args.warehouse_id})", flush=True)
    import threading

    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        t.join()
    except KeyboardInterrupt:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
