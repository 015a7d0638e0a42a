"""The documented silver-table MERGE (ops/sql/silver_dedupe.sql), run verbatim on DuckDB over landed rows."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import duckdb

from edge.encode import decode
from edge.schema import columns

from .test_table_and_verify import push

ROOT = Path(__file__).resolve().parents[2]
DUCK_TYPES = {"STRING": "VARCHAR", "VARIANT": "VARCHAR", "BIGINT": "BIGINT", "DOUBLE": "DOUBLE",
              "BOOLEAN": "BOOLEAN", "TIMESTAMP": "TIMESTAMP"}


def bronze_from_emulator(store: Path) -> tuple[duckdb.DuckDBPyConnection, int]:
    cols = columns()
    con = duckdb.connect()
    con.execute("CREATE TABLE bronze (" + ", ".join(f"{n} {DUCK_TYPES[t]}" for n, t, _ in cols) + ")")
    rows = []
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
        for (record,) in db.execute("SELECT record FROM rows ORDER BY id"):
            msg = decode(record)
            row = []
            for name, sql_type, _ in cols:
                v = getattr(msg, name) if msg.HasField(name) else None
                if v is not None and sql_type == "TIMESTAMP":
                    v = dt.datetime.fromtimestamp(v / 1e6, tz=dt.timezone.utc).replace(tzinfo=None)
                row.append(v)
            rows.append(row)
    con.executemany(f"INSERT INTO bronze VALUES ({', '.join('?' * len(cols))})", rows)
    return con, len(rows)


def run_recipe(con) -> None:
    sql = (ROOT / "ops" / "sql" / "silver_dedupe.sql").read_text().replace("{bronze}", "bronze").replace("{silver}", "silver")
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    for statement in filter(str.strip, body.split(";")):
        con.execute(statement)


def test_merge_leaves_one_row_per_key_and_is_idempotent(emu):
    push(emu, "plant-dbx", list(range(1, 201)), markers={150: 159})
    push(emu, "plant-dbx", list(range(101, 201)))  # a resent window: 100 duplicates
    push(emu, "plant-2", list(range(1, 51)))
    stats = emu.table_stats()
    assert stats["duplicates"] == 100
    con, n = bronze_from_emulator(emu.store_path)
    assert n == stats["rows"]
    run_recipe(con)
    run_recipe(con)  # a second run adds nothing
    total, keys = con.execute("SELECT count(*), count(DISTINCT (appliance_id, seq)) FROM silver").fetchone()
    assert total == keys == stats["unique"]
    # Every key keeps its content, markers included.
    assert con.execute("SELECT loss_from_seq, loss_to_seq FROM silver WHERE kind = 'loss'").fetchall() == [(150, 159)]
    assert con.execute("SELECT value_double FROM silver WHERE appliance_id = 'plant-dbx' AND seq = 120").fetchone() == (120.0,)
