"""Read queries shared by the writer's ``Spool`` and the read-only ``SpoolReader``."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from typing import Iterator

def _peek(conn: sqlite3.Connection, after_seq: int, max_records: int, max_bytes: int | None) -> list[tuple[int, bytes]]:
    rows = conn.execute(
        "SELECT seq, body FROM readings WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, max_records)
    ).fetchall()
    if max_bytes is None:
        return rows
    total = 0
    for i, (_seq, body) in enumerate(rows):
        total += len(body)
        if total > max_bytes and i > 0:  # always at least one row, else a big row would wedge the drain
            return rows[:i]
    return rows


def _states(conn: sqlite3.Connection, kind: str | None) -> list[dict]:
    if kind is None:
        rows = conn.execute("SELECT kind, name, json, updated_ts FROM state ORDER BY kind, name").fetchall()
    else:
        rows = conn.execute(
            "SELECT kind, name, json, updated_ts FROM state WHERE kind = ? ORDER BY name", (kind,)
        ).fetchall()
    return [{"kind": k, "name": n, "value": json.loads(j), "updated_ts": t} for k, n, j, t in rows]


def _dead_letters(conn: sqlite3.Connection, limit: int) -> list[dict]:
    rows = conn.execute(
        "SELECT id, seq, body, reason, ts, retried_seq FROM dead_letters ORDER BY id DESC LIMIT ?", (limit,)
    ).fetchall()
    return [{"id": i, "seq": s, "body": b, "reason": r, "ts": t, "retried_seq": rs} for i, s, b, r, t, rs in rows]


def _quarantined(conn: sqlite3.Connection, limit: int) -> list[dict]:
    rows = conn.execute(
        "SELECT id, source, reason, raw, raw_len, meta_json, ts FROM quarantine ORDER BY id DESC LIMIT ?", (limit,)
    ).fetchall()
    return [
        {"id": i, "source": s, "reason": r, "raw": raw, "raw_len": n, "meta": json.loads(m or "null"), "ts": t}
        for i, s, r, raw, n, m, t in rows
    ]


def _samples(conn: sqlite3.Connection, since_ts: float) -> list[dict]:
    rows = conn.execute(
        "SELECT ts, depth_rows, depth_bytes, appended_total, delivered_total, dropped_total, dropped_json "
        "FROM stats_samples WHERE ts >= ? ORDER BY ts",
        (since_ts,),
    ).fetchall()
    keys = ("ts", "depth_rows", "depth_bytes", "appended_total", "delivered_total", "dropped_total", "dropped")
    return [dict(zip(keys, r[:6] + (json.loads(r[6] or "{}"),))) for r in rows]


@contextlib.contextmanager
def _read_tx(conn: sqlite3.Connection) -> Iterator[None]:
    """One short read transaction: a consistent view, released at once so the WAL can recycle."""
    if conn.in_transaction:  # the writer asking inside its own transaction already has one
        yield
        return
    conn.execute("BEGIN")
    try:
        yield
    finally:
        conn.execute("COMMIT")

