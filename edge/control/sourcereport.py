"""The source checks (``edge doctor --sources``) as text, as an exit code, and as the state record the page shows.

The admin page cannot reach the OT network's servers, so the appliance runs the checks on
request (action ``run_source_checks``) and stores the outcome as state ``source_checks/last``.
Pure: the printed table, the stored record (secrets scrubbed once more), and ``/api/source-checks``.
"""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from typing import Any, Iterable

from edge.control.probing import FAIL, PASS, SKIP, STATUSES, WARN, Check
from edge.redact import Scrubber

KIND, NAME = "source_checks", "last"
ACTION = "run_source_checks"
FIELDS = ("source", "name", "status", "detail", "hint")


def lines(checks: Iterable[Check]) -> list[str]:
    """The printed table: one line per check, the hint indented under anything that did not pass."""
    rows = list(checks)
    width = max([len(c.source) for c in rows] + [6])
    names = max([len(c.name) for c in rows] + [6])
    out = []
    for c in rows:
        out.append(f"{c.status:<4}  {c.source:<{width}}  {c.name:<{names}}  {c.detail}")
        if c.hint and c.status in (FAIL, WARN):
            out.append(f"{'':<6}{'':<{width}}  hint: {c.hint}")
    return out


def counts(checks: Iterable[Any]) -> dict[str, int]:
    out = {s: 0 for s in STATUSES}
    for c in checks:
        status = c["status"] if isinstance(c, dict) else c.status
        out[status if status in out else FAIL] += 1
    return out


def verdict(checks: Iterable[Any]) -> str:
    n = counts(checks)
    if n[FAIL]:
        return f"{n[FAIL]} check(s) FAILED, {n[WARN]} warning(s), {n[PASS]} passed"
    return f"all checks passed ({n[PASS]} passed, {n[WARN]} warning(s), {n[SKIP]} skipped)"


def exit_code(checks: Iterable[Check]) -> int:
    return 1 if any(c.status == FAIL for c in checks) else 0


def record(checks: Iterable[Any], *, started_ts: float, finished_ts: float, secrets: Iterable[Any] = ()) -> dict:
    """The stored record for ``checks`` (``Check`` dataclasses or dicts)."""
    scrub = Scrubber(also=secrets)
    rows = []
    for c in checks:
        d = asdict(c) if is_dataclass(c) else dict(c)
        status = d.get("status") if d.get("status") in STATUSES else FAIL
        rows.append({k: scrub(d.get(k)) for k in FIELDS} | {"status": status})
    n = counts(rows)
    return {"ts": finished_ts, "started_ts": started_ts, "duration_s": round(max(0.0, finished_ts - started_ts), 3),
            "ok": bool(rows) and not n[FAIL], "counts": n, "checks": rows}


def summary(rec: dict) -> str:
    """One line for the request's answer."""
    failed = sorted({f"{c['source']} {c['name']}" for c in rec["checks"] if c["status"] == FAIL})
    text = verdict(rec["checks"])
    return (f"{text}: {', '.join(failed)}" if failed else text)[:300]


def document(states: dict[str, dict], requests: list[dict], *, now: float, spool_error: str | None = None) -> dict:
    """``/api/source-checks``: the last stored run (or null) and the recent ``run_source_checks`` requests."""
    raw = (states or {}).get(NAME)
    last = None
    if isinstance(raw, dict) and isinstance(raw.get("checks"), list):
        checks = [{k: c.get(k) for k in FIELDS} for c in raw["checks"] if isinstance(c, dict)]
        ts = raw.get("ts") if isinstance(raw.get("ts"), (int, float)) else None
        n = counts(checks)
        last = {"ts": ts, "age_s": None if ts is None else max(0.0, now - ts), "duration_s": raw.get("duration_s"),
                "ok": bool(checks) and not n[FAIL], "counts": n, "verdict": verdict(checks), "checks": checks}
    mine = [r for r in requests if r.get("action") == ACTION]
    return {"generated_ts": now, "last": last, "pending": any(r.get("status") == "pending" for r in mine),
            "requests": mine, "error": spool_error}


__all__ = ["ACTION", "FIELDS", "KIND", "NAME", "counts", "document", "exit_code", "lines", "record", "summary", "verdict"]
