"""``edge spool inspect`` and ``edge spool export``: the spool's tables for an operator, read-only.

sqlite-utils does the generic part (table names, columns and types, counts, rows as dicts
with paging); this module names what may leave the appliance and how bytes are written.
Readings are not exported (protobuf bodies; the forwarder delivers them). Bytes (a
quarantined payload, a dead letter's body) are written losslessly as sqlite-utils' CLI
writes them in JSON: ``{"$base64": true, "encoded": "..."}``; in CSV as base64 text.
"""

from __future__ import annotations

import base64
import csv
import json
import sqlite3
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

import sqlite_utils

from edge.spool.common import SpoolError, _file_size, _ro_uri

# table -> the column that orders it (oldest first)
EXPORTABLE = {
    "quarantine": "id",
    "dead_letters": "id",
    "loss_markers": "seq",
    "state": "kind, name",
    "stats_samples": "ts",
}
FORMATS = ("jsonl", "csv")


def _open(path: str | Path) -> sqlite_utils.Database:
    path = Path(path)
    if not path.exists():
        raise SpoolError(f"no spool at {path}")
    conn = sqlite3.connect(_ro_uri(path), uri=True, isolation_level=None, timeout=5)
    return sqlite_utils.Database(conn, execute_plugins=False)


def inspect(path: str | Path) -> dict:
    """Tables with their row counts and columns, the schema version, file sizes and free pages."""
    db = _open(path)
    try:
        conn = db.conn
        conn.execute("BEGIN")  # one consistent view
        try:
            tables = {name: {"rows": db[name].count, "columns": {c.name: c.type for c in db[name].columns}}
                      for name in db.table_names()}
            pragma = {k: conn.execute(f"PRAGMA {k}").fetchone()[0]
                      for k in ("user_version", "page_size", "page_count", "freelist_count", "journal_mode")}
        finally:
            conn.execute("COMMIT")
    finally:
        db.close()
    return {
        "path": str(path),
        "schema_version": pragma.pop("user_version"),
        **pragma,
        "db_bytes": _file_size(path),
        "wal_bytes": _file_size(f"{path}-wal"),
        "tables": tables,
    }


def rows(path: str | Path, table: str, *, limit: int | None = None, after: Any = None) -> Iterator[dict]:
    """Rows of one exportable table, oldest first; ``after``: only rows past that id (quarantine,
    dead letters) or seq (loss markers) or ts (samples)."""
    if table not in EXPORTABLE:
        raise SpoolError(f"cannot export {table!r}: one of {', '.join(EXPORTABLE)}")
    order = EXPORTABLE[table]
    where = f"{order} > ?" if after is not None and "," not in order else None
    db = _open(path)
    try:
        yield from db[table].rows_where(where, [after] if where else None, order_by=order, limit=limit)
    finally:
        db.close()


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def write(records: Iterable[dict], out: IO[str], fmt: str = "jsonl") -> int:
    """Write ``records`` as JSON lines or CSV (header from the first row); returns how many."""
    if fmt not in FORMATS:
        raise SpoolError(f"format must be one of {FORMATS}, not {fmt!r}")
    n = 0
    writer = None
    for rec in records:
        if fmt == "jsonl":
            out.write(json.dumps({k: {"$base64": True, "encoded": _b64(v)} if isinstance(v, bytes) else v
                                  for k, v in rec.items()}) + "\n")
        else:
            if writer is None:
                writer = csv.DictWriter(out, fieldnames=list(rec))
                writer.writeheader()
            writer.writerow({k: _b64(v) if isinstance(v, bytes) else v for k, v in rec.items()})
        n += 1
    return n
