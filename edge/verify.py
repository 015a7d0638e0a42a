"""Sequence accounting against the real Delta table, through the Statement Execution API.

Computes for one appliance what the emulator's ``/stats`` computes from its
store: rows, unique keys, duplicates, the seq range, missing ranges and which of
them loss markers explain. The gap search runs in the warehouse (a window
function over the distinct seqs), so only gaps and markers come back.
"""

from __future__ import annotations

from edge.accounting import report
from edge.databricks import Sql, WorkspaceError

MAX_GAPS = 10_000


def _where(lo: int | None, hi: int | None) -> str:
    clause = "appliance_id = :appliance_id"
    if lo is not None:
        clause += " AND seq >= :lo"
    if hi is not None:
        clause += " AND seq <= :hi"
    return clause


def table_report(sql: Sql, table: str, appliance_id: str, *, from_seq: int | None = None,
                 to_seq: int | None = None) -> dict:
    if not all(part.replace("_", "").isalnum() for part in table.split(".")) or table.count(".") != 2:
        raise WorkspaceError(f"not a catalog.schema.table name: {table!r}")
    params = {"appliance_id": (appliance_id, "STRING")}
    if from_seq is not None:
        params["lo"] = (from_seq, "BIGINT")
    if to_seq is not None:
        params["hi"] = (to_seq, "BIGINT")
    where = _where(from_seq, to_seq)
    (counts,) = sql.run(
        f"SELECT count(*) AS n, count(DISTINCT seq) AS u, min(seq) AS lo, max(seq) AS hi FROM {table} WHERE {where}",
        params,
    )
    n, u = int(counts[0] or 0), int(counts[1] or 0)
    lo = int(counts[2]) if counts[2] is not None else None
    hi = int(counts[3]) if counts[3] is not None else None
    gaps = sql.run(
        f"WITH s AS (SELECT DISTINCT seq FROM {table} WHERE {where}), "
        "g AS (SELECT seq, LEAD(seq) OVER (ORDER BY seq) AS nxt FROM s) "
        f"SELECT seq + 1 AS gap_from, nxt - 1 AS gap_to FROM g WHERE nxt > seq + 1 ORDER BY gap_from LIMIT {MAX_GAPS + 1}",
        params,
    )
    markers = sql.run(
        f"SELECT DISTINCT loss_from_seq, loss_to_seq FROM {table} WHERE {where} AND kind = 'loss' "
        "AND loss_from_seq IS NOT NULL AND loss_to_seq IS NOT NULL",
        params,
    )
    gap_list = [(int(a), int(b)) for a, b in gaps[:MAX_GAPS]]
    # A requested range whose ends never arrived is missing too.
    if from_seq is not None and (lo is None or lo > from_seq):
        gap_list.append((from_seq, (lo - 1) if lo is not None else (to_seq if to_seq is not None else from_seq)))
    if to_seq is not None and hi is not None and hi < to_seq:
        gap_list.append((hi + 1, to_seq))
    out = report(rows=n, unique=u, min_seq=lo, max_seq=hi, gaps=gap_list,
                 markers=[(int(a), int(b)) for a, b in markers])
    out["gaps_truncated"] = len(gaps) > MAX_GAPS
    return out
