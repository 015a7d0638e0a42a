"""The one stats dict of the spool (admin page, /metrics, drills, ``edge spool stats``)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from edge import budget
from edge.spool import common
from edge.spool.queries import _read_tx, _states
from edge.spool.schema import _read_meta

def _stats(conn: sqlite3.Connection, path: Path, now: float | None = None) -> dict:
    """The one stats dict (admin page, /metrics, drills, ``edge spool stats``). Keys:

    depth_rows / depth_bytes: rows in the table (readings and loss markers) and their
    charged bytes (body + ROW_OVERHEAD); depth_seqs: seqs not yet delivered (next_seq - 1 -
    delivered_seq, markers count for every seq they cover); budget_bytes, budget_used_pct,
    when_full; oldest_age_s (by the oldest row's collected ts); next_seq, delivered_seq;
    appended_total (seqs assigned, dropped batches included) and delivered_total (seqs passed
    by the watermark); dropped {cause: readings} and dropped_total; loss_markers_written;
    dead_lettered; quarantined; side_bytes (quarantine + dead letters, charged like rows and
    counted in the budget), side_budget_bytes (their cap) and side_dropped {table: rows the cap
    pushed out}; disk_free_bytes, db_bytes, wal_bytes; ingest_rate_10s/5m and
    drain_rate_10s/5m in seqs/s (None until samples exist); runway_s (None when not filling);
    drain_eta_s (None when not draining, 0 when empty); schema_version; alarms (state records);
    writer_state (ok / disk_full / error: edge/spool/health.py).
    """
    now = time.time() if now is None else now
    with _read_tx(conn):
        meta = _read_meta(conn)
        settings = conn.execute("SELECT max_bytes, when_full, side_max_bytes FROM meta WHERE id = 1").fetchone()
        oldest = conn.execute("SELECT ts FROM readings ORDER BY seq LIMIT 1").fetchone()
        pts = conn.execute(
            "SELECT ts, appended_total, delivered_total FROM stats_samples "
            "WHERE ts >= (SELECT coalesce(max(ts), 0) FROM stats_samples WHERE ts < ?) ORDER BY ts",
            (now - 300,),
        ).fetchall()
        alarms = _states(conn, "alarm")
        writer = {st["name"]: st["value"] for st in _states(conn, "spool")}.get("writer") or {}
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    max_bytes, when_full, side_max_bytes = settings
    disk_free = common._disk_free(path.parent)
    writer_state = _writer_state(writer, disk_free)
    ingest = [(t, a) for t, a, _d in pts]
    drain = [(t, d) for t, _a, d in pts]
    rates = {
        f"{name}_rate_{label}": budget.rate(series, (now, current), window)
        for name, series, current in (
            ("ingest", ingest, meta.appended_total),
            ("drain", drain, meta.delivered_total),
        )
        for label, window in (("10s", 10.0), ("5m", 300.0))
    }
    depth_seqs = meta.next_seq - 1 - meta.delivered_seq
    bytes_per_row = meta.stored_bytes / meta.stored_rows if meta.stored_rows else 0.0
    dropped_total = sum(meta.dropped.values())
    return {
        "path": str(path),
        "appliance_id": meta.appliance_id,
        "schema_version": version,
        "depth_rows": meta.stored_rows,
        "depth_seqs": depth_seqs,
        "depth_bytes": meta.stored_bytes,
        "budget_bytes": max_bytes,
        "budget_used_pct": budget.used_pct(meta.stored_bytes, max_bytes or 0),
        "when_full": when_full,
        "oldest_age_s": max(0.0, now - oldest[0] / 1e6) if oldest else None,
        "next_seq": meta.next_seq,
        "delivered_seq": meta.delivered_seq,
        "appended_total": meta.appended_total,
        "delivered_total": meta.delivered_total,
        "dropped": dict(meta.dropped),
        "dropped_total": dropped_total,
        "loss_markers_written": meta.markers_written,
        "dead_lettered": meta.dead_lettered,
        "quarantined": meta.quarantined,
        "side_bytes": meta.side_bytes,
        "side_budget_bytes": side_max_bytes,
        "side_dropped": dict(meta.side_dropped),
        "disk_free_bytes": disk_free,
        "db_bytes": common._file_size(path),
        "wal_bytes": common._file_size(f"{path}-wal"),
        **rates,
        "runway_s": budget.runway_s(
            max_bytes or 0, meta.stored_bytes, rates["ingest_rate_10s"], rates["drain_rate_10s"], bytes_per_row
        ),
        "drain_eta_s": budget.drain_eta_s(depth_seqs, rates["ingest_rate_10s"], rates["drain_rate_10s"]),
        "alarms": alarms,
        "writer_state": writer_state,
    }


def _writer_state(writer: dict, disk_free: int | None) -> str:
    """The writer's stored state line, or ``disk_full`` when the disk has no room above the writer's
    ``min_free_bytes`` now: a disk so full that the writer cannot store its own state line must
    still show as full (the writer judges by the same free space)."""
    if disk_free is not None and "min_free_bytes" in writer and disk_free <= writer["min_free_bytes"]:
        return "disk_full"
    return writer.get("state", "ok")


def _disk_full_detail(conn: sqlite3.Connection, path: Path) -> str | None:
    """None while the spool's disk has room; else what the writer says about it."""
    with _read_tx(conn):
        writer = {st["name"]: st["value"] for st in _states(conn, "spool")}.get("writer") or {}
    disk_free = common._disk_free(path.parent)
    if _writer_state(writer, disk_free) != "disk_full":
        return None
    if writer.get("state") == "disk_full" and writer.get("error"):
        return str(writer["error"])
    return f"{disk_free} bytes free, min_free_bytes {writer.get('min_free_bytes')}"


# A source in one of these states is collecting (or about to): when the spool's disk is full
# what it collects is refused or dropped, and that is what its row must say. The names are
# edge.sources.states.State values (the spool does not import the sources layer;
# tests/spool/test_spool_diskfull.py checks them).
COLLECTING_STATES = frozenset({"starting", "connecting", "subscribing", "backfilling", "connected", "running",
                               "listening", "degraded"})


def with_disk_state(records: list[dict], disk_detail: str | None) -> list[dict]:
    """Source state records as the page shows them: a collecting source on a full disk says
    ``disk_full`` (its own state kept as ``reported_state``); other records as stored."""
    if disk_detail is None:
        return records
    out = []
    for rec in records:
        value = rec.get("value")
        if rec.get("kind") == "source" and isinstance(value, dict) and value.get("state") in COLLECTING_STATES:
            value = {**value, "state": "disk_full", "reported_state": value["state"],
                     "detail": f"spool disk full ({disk_detail}); the source reports {value['state']}: "
                               f"{value.get('detail') or ''}"[:500]}
            rec = {**rec, "value": value}
        out.append(rec)
    return out

