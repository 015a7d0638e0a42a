"""The `edge` command: one image, one package, one CLI.

    edge run --config F              everything in one process (spool writer, forwarder, sources)
    edge check-config --config F     validate and summarise; exit 2 naming the bad field
    edge config schema               JSON Schema of the config file (for editors)
    edge spool stats --config F      JSON: depth, oldest age, rates, runway, ETA, losses
    edge spool dead-letters|quarantine --config F [--limit N]
    edge spool inspect --config F    JSON: tables, row counts, columns, schema version, sizes
    edge spool export T --config F   quarantine / dead letters / markers as JSON lines or CSV
    edge healthcheck --config F      exit 0 when the appliance is ready (for Compose)
    edge admin --config F            the admin page under gunicorn
    edge table ddl [--table T]       the bronze table's CREATE TABLE statement
    edge table create --config F     create the table and grant the service principal (SQL warehouse)
    edge doctor --config F           preflight: reachability, TLS, token, table, schema, write, clock
    edge doctor --sources --config F each source: reach, security, trust, login, a sample read
    edge verify --config F           sequence accounting against the real table (SQL warehouse)
    edge init-secrets --dir D        first start: credentials from the environment or generated once
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from pathlib import Path

from edge import __version__
from edge.configtypes import ConfigError

EXIT_CONFIG = 2
EXIT_UNHEALTHY = 1


def _setup_logging(level: str = "info") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stdout,
    )


def _load(args):
    from edge.config import load

    return load(args.config)


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", "-c", default=os.environ.get("EDGE_CONFIG", "/etc/edge/config.yaml"),
        help="the appliance's YAML config (default: $EDGE_CONFIG or /etc/edge/config.yaml)",
    )


def cmd_run(args) -> int:
    cfg = _load(args)
    _setup_logging(cfg.logging.level)
    from edge.runner import run

    run(cfg, forward=not args.no_forward)
    return 0


def cmd_check_config(args) -> int:
    cfg = _load(args)
    print(f"config OK: appliance {cfg.appliance_id}")
    print(f"  spool     {cfg.spool.path}  budget {cfg.spool.max_bytes} bytes  when_full={cfg.spool.when_full}")
    print(f"  zerobus   {cfg.zerobus.endpoint} -> {cfg.zerobus.table}  (client {cfg.zerobus.client_id})")
    for s in cfg.sources:
        print(f"  source    {s.name} ({s.type}){'' if s.enabled else '  [disabled]'}")
    return 0


def cmd_config_schema(args) -> int:
    from edge.config import schema

    print(json.dumps(schema(), indent=2))
    return 0


def _reader(cfg):
    from edge.spool import SpoolReader

    if not Path(cfg.spool.path).exists():
        raise ConfigError("spool.path", f"no spool at {cfg.spool.path} (has the appliance run yet?)")
    return SpoolReader(cfg.spool.path)


def cmd_spool_stats(args) -> int:
    reader = _reader(_load(args))
    print(json.dumps(reader.stats(), indent=2, sort_keys=True, default=str))
    return 0


def cmd_spool_list(args) -> int:
    reader = _reader(_load(args))
    rows = reader.dead_letters(args.limit) if args.what == "dead-letters" else [_readable(r) for r in reader.quarantined(args.limit)]
    print(json.dumps(rows, indent=2, default=lambda b: b.hex() if isinstance(b, bytes) else str(b)))
    return 0


def _readable(row: dict) -> dict:
    """A quarantined payload as text when it is printable UTF-8 (``raw_encoding: utf-8``), else hex."""
    raw = row.get("raw")
    if not isinstance(raw, (bytes, bytearray)):
        return {**row, "raw_encoding": "utf-8"} if isinstance(raw, str) else row
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\n\r\t" for c in text):
        return {**row, "raw": text, "raw_encoding": "utf-8"}
    return {**row, "raw": bytes(raw).hex(), "raw_encoding": "hex"}


def cmd_spool_inspect(args) -> int:
    from edge.spool.export import inspect

    _reader(cfg := _load(args)).close()  # the same "no spool" error as the other commands
    print(json.dumps(inspect(cfg.spool.path), indent=2, sort_keys=True))
    return 0


def cmd_spool_export(args) -> int:
    from edge.spool import export

    _reader(cfg := _load(args)).close()
    records = export.rows(cfg.spool.path, args.table.replace("-", "_"), limit=args.limit, after=args.after)
    with (open(args.output, "w", newline="") if args.output else contextlib.nullcontext(sys.stdout)) as out:
        n = export.write(records, out, args.format)
    print(f"exported {n} rows of {args.table}", file=sys.stderr)
    return 0


def cmd_healthcheck(args) -> int:
    """Ready = the spool opens and answers, and the forwarder reported its state recently."""
    cfg = _load(args)
    try:
        reader = _reader(cfg)
        with reader:
            stats = reader.stats()
            fwd = {s["name"]: s for s in reader.states("forwarder")}.get("main")
    except Exception as exc:
        print(f"unhealthy: spool: {exc}")
        return EXIT_UNHEALTHY
    if fwd is None:
        print("unhealthy: the forwarder has not reported yet")
        return EXIT_UNHEALTHY
    age = time.time() - float(fwd["updated_ts"])
    if age > args.max_age:
        print(f"unhealthy: the forwarder's last report is {age:.0f}s old")
        return EXIT_UNHEALTHY
    print(f"ok: depth {stats.get('depth_rows')} readings, forwarder {fwd['value'].get('state')}")
    return 0


def cmd_admin(args) -> int:
    cfg = _load(args)
    _setup_logging(cfg.logging.level)
    from edge.admin import serve

    return serve(args.config, args.bind) or 0


def cmd_table_ddl(args) -> int:
    from edge.schema import ddl

    print(ddl(args.table))
    return 0


def _sql(cfg, args):
    from edge import databricks

    warehouse = args.warehouse_id or cfg.zerobus.warehouse_id
    if not warehouse:
        raise ConfigError("zerobus.warehouse_id", "a SQL warehouse id is needed (config or --warehouse-id)")
    return databricks.Sql(databricks.client(cfg.zerobus), warehouse)


def cmd_table_create(args) -> int:
    from edge import databricks

    cfg = _load(args)
    statements = databricks.bootstrap_statements(cfg.zerobus.table, args.principal)
    if args.dry_run:
        print(";\n\n".join(statements) + ";")
        return 0
    sql = _sql(cfg, args)
    for st in statements:
        print(f"-- running:\n{st};")
        try:
            sql.run(st)
        except databricks.WorkspaceError as exc:
            print(f"edge: {exc}", file=sys.stderr)
            return 1
    print(f"-- {cfg.zerobus.table} is ready" + (f" for {args.principal}" if args.principal else ""))
    return 0


def cmd_doctor(args) -> int:
    from edge.control.doctor import Doctor, report

    cfg = _load(args)
    if args.sources or args.source:
        from edge.control import sourcedoctor

        # The rows say what the protocol libraries would log (asyncua, pymodbus): keep their lines
        # out of the table and the JSON; only a crash of theirs is worth a line, on stderr.
        logging.basicConfig(level=logging.CRITICAL, stream=sys.stderr)
        return sourcedoctor.report(sourcedoctor.run(cfg, args.timeout, args.source), as_json=args.json)
    checks = Doctor(cfg, timeout=args.timeout).run(with_stream=not args.no_stream)
    return report(checks, as_json=args.json)


def cmd_verify(args) -> int:
    from edge import databricks
    from edge.verify import table_report, verify_summary

    cfg = _load(args)
    appliance = args.appliance_id or cfg.appliance_id
    try:
        rep = table_report(_sql(cfg, args), cfg.zerobus.table, appliance, from_seq=args.from_seq, to_seq=args.to_seq)
    except databricks.WorkspaceError as exc:
        print(f"edge: {exc}", file=sys.stderr)
        return 1
    doc = {"tables": {cfg.zerobus.table: {"rows": rep["rows"], "unique": rep["unique"],
                                          "duplicates": rep["duplicates"], "appliances": {appliance: rep}}}}
    print(json.dumps(doc, indent=2))
    print(verify_summary(appliance, rep), file=sys.stderr)  # for a person; stdout stays the JSON document
    return 0 if rep["unexplained_missing_count"] == 0 else 1


def cmd_init_secrets(args) -> int:
    from edge.firststart import ensure

    try:
        done = ensure(args.dir)
    except (ValueError, OSError) as exc:
        print(f"edge: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    for name, how in done.items():
        print(f"{name}: {how}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge", description="Zerobus Edge store-and-forward appliance")
    p.add_argument("--version", action="version", version=f"zerobus-edge {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the appliance: spool writer, forwarder and every enabled source")
    _config_arg(run)
    run.add_argument("--no-forward", action="store_true", help="collect and spool only (e.g. during commissioning)")
    run.set_defaults(func=cmd_run)

    chk = sub.add_parser("check-config", help="validate the config; exit 2 naming the first bad field")
    _config_arg(chk)
    chk.set_defaults(func=cmd_check_config)

    conf = sub.add_parser("config", help="the config file's schema").add_subparsers(dest="config_command", required=True, metavar="WHAT")
    conf.add_parser("schema", help="print the JSON Schema of the config file (for editors)").set_defaults(func=cmd_config_schema)

    spool = sub.add_parser("spool", help="inspect the spool").add_subparsers(dest="spool_command", required=True, metavar="WHAT")
    st = spool.add_parser("stats", help="JSON: depth, oldest age, rates, runway, ETA, losses")
    _config_arg(st)
    st.set_defaults(func=cmd_spool_stats)
    for what in ("dead-letters", "quarantine"):
        sp = spool.add_parser(what, help=f"JSON list of {what.replace('-', ' ')}")
        _config_arg(sp)
        sp.add_argument("--limit", type=int, default=50)
        sp.set_defaults(func=cmd_spool_list, what=what)
    si = spool.add_parser("inspect", help="JSON: tables, row counts, columns, schema version, file sizes")
    _config_arg(si)
    si.set_defaults(func=cmd_spool_inspect)
    se = spool.add_parser("export", help="a side table as JSON lines or CSV, oldest first (bytes as base64)")
    _config_arg(se)
    se.add_argument("table", choices=("quarantine", "dead-letters", "loss-markers", "state", "stats-samples"))
    se.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    se.add_argument("--limit", type=int, default=None)
    se.add_argument("--after", type=float, default=None, help="only rows past this id / seq / ts")
    se.add_argument("--output", "-o", default=None, help="a file instead of stdout")
    se.set_defaults(func=cmd_spool_export)

    hc = sub.add_parser("healthcheck", help="exit 0 when the spool answers and the forwarder reported recently")
    _config_arg(hc)
    hc.add_argument("--max-age", type=float, default=60.0, help="seconds a forwarder state may be old (default 60)")
    hc.set_defaults(func=cmd_healthcheck)

    adm = sub.add_parser("admin", help="serve the admin page (gunicorn)")
    _config_arg(adm)
    adm.add_argument("--bind", default=None, help="host:port (default: admin.bind from the config)")
    adm.set_defaults(func=cmd_admin)

    table = sub.add_parser("table", help="the Databricks bronze table").add_subparsers(dest="table_command", required=True, metavar="WHAT")
    dd = table.add_parser("ddl", help="print the CREATE TABLE statement for a workspace admin")
    dd.add_argument("--table", default="main.edge.readings", help="catalog.schema.table")
    dd.set_defaults(func=cmd_table_ddl)
    tc = table.add_parser("create", help="create the table with its DDL and grant the service principal (prints the SQL)")
    _config_arg(tc)
    tc.add_argument("--warehouse-id", default=None, help="SQL warehouse (default: zerobus.warehouse_id)")
    tc.add_argument("--principal", default=None, help="service principal application id to grant (default: none)")
    tc.add_argument("--dry-run", action="store_true", help="print the SQL, run nothing")
    tc.set_defaults(func=cmd_table_create)

    doc = sub.add_parser("doctor", help="preflight before go-live: exit 0 only if every check passes")
    _config_arg(doc)
    doc.add_argument("--json", action="store_true", help="machine-readable output")
    doc.add_argument("--timeout", type=float, default=10.0, help="seconds per network step (default 10)")
    doc.add_argument("--no-stream", action="store_true", help="skip opening a real ZeroBus stream")
    doc.add_argument("--sources", action="store_true",
                     help="check the sources instead: reach, security, trust, login and a sample read of each")
    doc.add_argument("--source", action="append", default=[], metavar="NAME",
                     help="check only this source (repeatable; implies --sources)")
    doc.set_defaults(func=cmd_doctor)

    ini = sub.add_parser("init-secrets", help="first start: write missing credentials (admin, MQTT) into a directory")
    ini.add_argument("--dir", default="/secrets", help="where the credential files go (default /secrets)")
    ini.set_defaults(func=cmd_init_secrets)

    ver = sub.add_parser("verify", help="seq accounting of this appliance in the real table; exit 1 on unexplained gaps")
    _config_arg(ver)
    ver.add_argument("--warehouse-id", default=None, help="SQL warehouse (default: zerobus.warehouse_id)")
    ver.add_argument("--appliance-id", default=None, help="default: appliance_id from the config")
    ver.add_argument("--from-seq", type=int, default=None)
    ver.add_argument("--to-seq", type=int, default=None)
    ver.set_defaults(func=cmd_verify)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The ZeroBus SDK's Rust core logs to stdout: plain text always, and only warnings
    # outside `edge run` so that JSON output stays parseable.
    os.environ.setdefault("NO_COLOR", "1")
    if args.command != "run":
        os.environ.setdefault("RUST_LOG", "warn")
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"edge: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
