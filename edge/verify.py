"""Sequence accounting against the real Delta table, through the Statement Execution API.

Computes for one appliance what the emulator's ``/stats`` computes from its
store: rows, unique keys, duplicates, the seq range, missing ranges and which of
them loss markers explain. The gap search runs in the warehouse (a window
function over the distinct seqs), so only gaps and markers come back.

It also lists what is explained, so an operator sees it rather than a count:
``explained`` (every loss marker: its seq range and reason, e.g. ``spool_lost``,
``spool_corrupt``, ``drop_oldest``) and ``source_gaps`` (the rows of kind ``gap``:
a point whose values the source lost for an interval, e.g. OPC-UA history that
could not back-fill it), each with totals by reason. Those details read the
``loss_reason``, ``source``, ``point`` and ``value_json`` columns; a table that
cannot answer them still gets its accounting, with ``details_error`` saying why.
"""

from __future__ import annotations

import json
from typing import Any

from edge.accounting import report
from edge.databricks import Sql, WorkspaceError

MAX_GAPS = 10_000
MAX_LISTED = 1_000  # markers and gap rows listed one by one; the totals by reason count them all


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
    ranges = [(int(a), int(b)) for a, b in markers]
    out = report(rows=n, unique=u, min_seq=lo, max_seq=hi, gaps=gap_list, markers=ranges)
    out["gaps_truncated"] = len(gaps) > MAX_GAPS
    try:
        out.update(_details(sql, table, where, params))
    except WorkspaceError as exc:
        out.update(_marker_list([(a, b, None) for a, b in ranges]), source_gaps=[], source_gaps_count=None,
                   source_gaps_by_reason={}, details_error=str(exc)[:300])
    return out


def _details(sql: Sql, table: str, where: str, params: dict) -> dict:
    """What explains the missing seqs (loss markers with their reasons) and the intervals sources
    lost (gap rows), listed up to MAX_LISTED each, with totals by reason."""
    markers = sql.run(
        f"SELECT loss_from_seq, loss_to_seq, loss_reason FROM {table} WHERE {where} AND kind = 'loss' "
        "AND loss_from_seq IS NOT NULL AND loss_to_seq IS NOT NULL "
        "GROUP BY loss_from_seq, loss_to_seq, loss_reason ORDER BY loss_from_seq, loss_to_seq",
        params,
    )
    by_reason = sql.run(
        f"SELECT loss_reason, count(*) FROM (SELECT DISTINCT seq, loss_reason FROM {table} "
        f"WHERE {where} AND kind = 'gap') AS g GROUP BY loss_reason ORDER BY loss_reason",
        params,
    )
    rows = sql.run(
        f"SELECT seq, source, point, loss_reason, value_json FROM {table} WHERE {where} AND kind = 'gap' "
        f"ORDER BY seq LIMIT {MAX_LISTED * 2}",
        params,
    )
    gaps, seen = [], set()
    for seq, source, point, reason, value in rows:
        if seq in seen:  # a row delivered twice (at-least-once) is one gap
            continue
        seen.add(seq)
        span = _json(value)
        gaps.append({"seq": int(seq), "source": source, "point": point, "reason": reason,
                     "from_us": span.get("from_us"), "to_us": span.get("to_us"), "seconds": span.get("seconds")})
    counts = {str(r): int(c) for r, c in by_reason}
    return {**_marker_list([(int(a), int(b), r) for a, b, r in markers]), "source_gaps": gaps[:MAX_LISTED],
            "source_gaps_count": sum(counts.values()), "source_gaps_by_reason": counts, "details_error": None}


def _marker_list(markers: list[tuple[int, int, str | None]]) -> dict:
    seqs: dict[str, int] = {}
    for a, b, reason in markers:
        seqs[str(reason)] = seqs.get(str(reason), 0) + b - a + 1
    return {"explained": [{"from_seq": a, "to_seq": b, "seqs": b - a + 1, "reason": r}
                          for a, b, r in sorted(set(markers), key=lambda m: (m[0], m[1]))][:MAX_LISTED],
            "explained_by_reason": seqs}


def _json(value: Any) -> dict:
    """``value_json`` as the warehouse returns it (JSON text of the VARIANT)."""
    try:
        doc = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def verify_summary(appliance_id: str, rep: dict) -> str:
    """What ``edge verify`` found, in a few lines for a person (the JSON has every range)."""
    def by(counts: dict) -> str:
        return ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items())) or "-"

    lines = [f"{appliance_id}: seq {rep['min_seq']}..{rep['max_seq']}, {rep['rows']} rows, "
             f"{rep['duplicates']} duplicates; {rep['missing_count']} seqs missing, "
             f"{rep['unexplained_missing_count']} unexplained"]
    if rep["unexplained_missing"]:
        shown = ", ".join(f"{a}..{b}" for a, b in rep["unexplained_missing"][:10])
        lines.append(f"  unexplained: {shown}" + (" ..." if len(rep["unexplained_missing"]) > 10 else ""))
    lines.append(f"  loss markers: {len(rep.get('explained') or [])} (seqs by reason: "
                 f"{by(rep.get('explained_by_reason') or {})})")
    count = rep.get("source_gaps_count")
    lines.append(f"  source gaps: {'?' if count is None else count} (by reason: "
                 f"{by(rep.get('source_gaps_by_reason') or {})})")
    if rep.get("details_error"):
        lines.append(f"  details unavailable: {rep['details_error']}")
    return "\n".join(lines)
