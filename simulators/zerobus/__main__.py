"""``python -m simulators.zerobus`` serves; ``... query`` / ``... stats`` read a data dir.

Every serve flag has an environment twin (ZEROBUS_EMULATOR_<FLAG>), flags win.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from .app import DEFAULT_DDL, DEFAULT_TABLE, Emulator, Options, decode_rows
from .ledger import Ledger
from .realism import PROFILES, QUOTA_ACTIONS, check
from .schema import SchemaError, load_ddl
from .store import Store

ENV = "ZEROBUS_EMULATOR_"


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(ENV + name, default)


def _env_bool(name: str) -> bool:
    return (_env(name, "") or "").lower() in ("1", "true", "yes", "on")


def serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m simulators.zerobus", description="Local ZeroBus emulator (gRPC ingest + OAuth + stats + faults).")
    p.add_argument("--host", default=_env("HOST", "0.0.0.0"), help="bind address (tests: 127.0.0.1) [HOST]")
    p.add_argument("--grpc-port", type=int, default=int(_env("GRPC_PORT", "50051")), help="gRPC port, 0 = any free [GRPC_PORT]")
    p.add_argument("--http-port", type=int, default=int(_env("HTTP_PORT", "8080")), help="HTTP port (token, /stats, /faults), 0 = any free [HTTP_PORT]")
    p.add_argument("--data-dir", default=_env("DATA_DIR", "./zerobus-emulator-data"), help="store, token key, TLS files [DATA_DIR]")
    p.add_argument("--table", action="append", dest="tables", help=f"table served (repeatable; default {DEFAULT_TABLE}) [TABLES, comma-separated]")
    p.add_argument("--ddl", default=_env("DDL", DEFAULT_DDL), help="CREATE TABLE file giving the schema of every table [DDL]")
    p.add_argument("--client-id", default=_env("CLIENT_ID"), help="accept only this OAuth client (default: any) [CLIENT_ID]")
    p.add_argument("--client-secret", default=_env("CLIENT_SECRET"), help="its secret [CLIENT_SECRET]")
    p.add_argument("--tls", action="store_true", default=_env_bool("TLS"), help="serve gRPC and HTTP over TLS with a generated CA [TLS]")
    p.add_argument("--tls-hostname", action="append", dest="tls_hostnames", help="extra SAN for the server certificate (repeatable) [TLS_HOSTNAMES]")
    p.add_argument("--store", choices=("sqlite", "none"), default=_env("STORE", "sqlite"), help="none = ack without storing (benchmark baseline) [STORE]")
    p.add_argument("--token-ttl", type=int, default=int(_env("TOKEN_TTL", "3600")), help="expires_in of issued tokens, seconds [TOKEN_TTL]")
    p.add_argument("--max-record-bytes", type=int, default=int(_env("MAX_RECORD_BYTES", str(4 * 1024 * 1024))), help="per-record limit [MAX_RECORD_BYTES]")
    p.add_argument("--tls-cert", default=_env("TLS_CERT"), help="serve TLS with this certificate chain (PEM) instead of a generated one; implies --tls [TLS_CERT]")
    p.add_argument("--tls-key", default=_env("TLS_KEY"), help="its private key (PEM) [TLS_KEY]")
    p.add_argument("--tls-ca", default=_env("TLS_CA"), help="the CA that issued --tls-cert, served at /ca.pem [TLS_CA]")
    p.add_argument("--workspace-id", default=_env("WORKSPACE_ID"), help="token requests must name this workspace in resource= (default: any) [WORKSPACE_ID]")
    r = p.add_argument_group("realism (README.md, Realistic profile); each also settable per test through POST /faults")
    r.add_argument("--profile", choices=sorted(PROFILES), default=_env("PROFILE", "none"), help="realistic = the published service figures [PROFILE]")
    for name, kind, what in (
        ("ack-latency-ms", float, "median ack latency, from each batch's arrival"),
        ("ack-jitter-ms", float, "p95 minus median of the ack latency (log-normal)"),
        ("quota-records-per-s", float, "per-stream records/s, 0 = unlimited"),
        ("quota-bytes-per-s", float, "per-stream bytes/s, 0 = unlimited"),
        ("quota-action", str, f"over quota: {' or '.join(QUOTA_ACTIONS)}"),
        ("stream-lifetime-s", float, "close_stream_signal after this stream age, 0 = never"),
        ("close-grace-ms", int, "duration carried by the close_stream_signal"),
    ):
        env = name.upper().replace("-", "_")
        r.add_argument("--" + name, type=kind, default=_env(env), help=f"{what} (default: the profile's) [{env}]")
    return p


def profile_of(a: argparse.Namespace):
    """The --profile preset with every explicitly given realism flag on top."""
    base = PROFILES[a.profile]
    given = {}
    for key in base.as_dict():
        value = getattr(a, key, None)
        if value is not None:
            given[key] = check(key, value if key == "quota_action" else float(value))
    return base.with_overrides(given)


def query_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m simulators.zerobus query", description="Print stored rows as JSON lines, decoded.")
    p.add_argument("--data-dir", default=_env("DATA_DIR", "./zerobus-emulator-data"))
    p.add_argument("--table", default=DEFAULT_TABLE)
    p.add_argument("--ddl", default=_env("DDL", DEFAULT_DDL))
    p.add_argument("--appliance-id")
    p.add_argument("--from-seq", type=int)
    p.add_argument("--limit", type=int, default=100)
    return p


def stats_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m simulators.zerobus stats", description="The /stats document computed from a data dir.")
    p.add_argument("--data-dir", default=_env("DATA_DIR", "./zerobus-emulator-data"))
    return p


def _store_path(data_dir: str) -> str:
    path = os.path.join(data_dir, "store.sqlite")
    if not os.path.exists(path):
        raise SystemExit(f"no store at {path}")
    return path


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["query"]:
        a = query_parser().parse_args(argv[1:])
        store = Store(_store_path(a.data_dir), Ledger())
        rows = store.rows(a.table, a.appliance_id, a.from_seq, a.limit)
        for row in decode_rows(rows, load_ddl(a.ddl), {}):
            print(json.dumps(row, separators=(",", ":")))
        return 0
    if argv[:1] == ["stats"]:
        a = stats_parser().parse_args(argv[1:])
        ledger = Ledger()
        Store(_store_path(a.data_dir), ledger).rebuild()
        print(json.dumps(ledger.snapshot(), indent=2))
        return 0
    if argv[:1] == ["serve"]:
        argv = argv[1:]
    a = serve_parser().parse_args(argv)
    tables = a.tables or [t.strip() for t in (_env("TABLES", DEFAULT_TABLE) or DEFAULT_TABLE).split(",") if t.strip()]
    hostnames = a.tls_hostnames or [h.strip() for h in (_env("TLS_HOSTNAMES", "") or "").split(",") if h.strip()]
    if (a.client_id is None) != (a.client_secret is None):
        print("--client-id and --client-secret go together", file=sys.stderr)
        return 2
    if a.tls_cert and not a.tls_key:
        print("--tls-cert needs --tls-key", file=sys.stderr)
        return 2
    try:
        profile = profile_of(a)
    except ValueError as exc:
        print(f"zerobus emulator: {exc}", file=sys.stderr)
        return 2
    opts = Options(
        host=a.host, grpc_port=a.grpc_port, http_port=a.http_port, data_dir=a.data_dir, tables=tables, ddl=a.ddl,
        client_id=a.client_id, client_secret=a.client_secret, tls=a.tls or bool(a.tls_cert), tls_hostnames=hostnames, store=a.store,
        token_ttl_s=a.token_ttl, max_record_bytes=a.max_record_bytes, tls_cert=a.tls_cert, tls_key=a.tls_key, tls_ca=a.tls_ca,
        profile=profile, workspace_id=a.workspace_id,
    )
    try:
        emulator = Emulator(opts)
    except (SchemaError, OSError, ValueError) as exc:
        print(f"zerobus emulator: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(emulator.run())
    except (OSError, RuntimeError) as exc:  # a port in use, an unwritable data dir
        print(f"zerobus emulator: cannot serve: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
