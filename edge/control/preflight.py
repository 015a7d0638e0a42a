"""The go-live preflight (``edge doctor``) as a state record the appliance stores and the page shows.

The admin page has no egress, so the appliance runs the checks on request
(action ``run_preflight``) and stores the outcome as state ``preflight/last``.
Pure: building that record (secrets scrubbed once more, whatever a check's
text may hold) and turning it back into what the page and ``/api/preflight`` show.
"""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from typing import Any, Iterable

from edge.redact import Scrubber

KIND, NAME = "preflight", "last"
ACTION = "run_preflight"
_FIELDS = ("name", "ok", "detail", "hint")


def record(checks: Iterable[Any], *, started_ts: float, finished_ts: float, secrets: Iterable[Any] = ()) -> dict:
    """The stored record for the doctor's ``checks`` (``Check`` dataclasses or dicts)."""
    scrub = Scrubber(also=secrets)
    rows = []
    for c in checks:
        d = asdict(c) if is_dataclass(c) else dict(c)
        rows.append({"name": scrub(d.get("name")), "ok": bool(d.get("ok")),
                     "detail": scrub(d.get("detail")), "hint": scrub(d.get("hint"))})
    passed = sum(r["ok"] for r in rows)
    return {"ts": finished_ts, "started_ts": started_ts, "duration_s": round(max(0.0, finished_ts - started_ts), 3),
            "ok": bool(rows) and passed == len(rows), "passed": passed, "total": len(rows), "checks": rows}


def summary(rec: dict) -> str:
    """One line for the request's answer."""
    if rec["ok"]:
        return f"all {rec['total']} checks passed"
    failed = [c["name"] for c in rec["checks"] if not c["ok"]]
    return f"{rec['passed']} of {rec['total']} checks passed; failed: {', '.join(failed)}"[:300]


def document(states: dict[str, dict], requests: list[dict], *, now: float, spool_error: str | None = None) -> dict:
    """``/api/preflight``: the last stored run (or null) and the recent ``run_preflight`` requests."""
    raw = (states or {}).get(NAME)
    last = None
    if isinstance(raw, dict) and isinstance(raw.get("checks"), list):
        checks = [{k: c.get(k) for k in _FIELDS} for c in raw["checks"] if isinstance(c, dict)]
        ts = raw.get("ts") if isinstance(raw.get("ts"), (int, float)) else None
        last = {"ts": ts, "age_s": None if ts is None else max(0.0, now - ts),
                "duration_s": raw.get("duration_s"), "ok": bool(raw.get("ok")) and all(c["ok"] for c in checks),
                "passed": sum(bool(c["ok"]) for c in checks), "total": len(checks), "checks": checks}
    mine = [r for r in requests if r.get("action") == ACTION]
    return {"generated_ts": now, "last": last, "pending": any(r.get("status") == "pending" for r in mine),
            "requests": mine, "error": spool_error}
