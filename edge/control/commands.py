"""Operator requests from the admin page, as files the appliance process picks up.

The admin page never writes the spool (exactly one process does), so an action
such as "pause forwarding" is a *request*: a JSON file in the commands
directory, written atomically (temp file, fsync, rename). The runner polls
``process(dir, handlers)`` (or ``pending()`` + ``complete()``), which honours
what it can and moves each file to ``done/`` with the outcome. The page shows both, so an
operator sees whether a request was honoured, refused or is still waiting.

Record: ``{"id", "action", "args", "by", "ts", "status": "pending"|"done"|"refused",
"detail", "done_ts"}``.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any, Callable

from edge.fsutil import write_atomic

ACTIONS = {
    # action: (role needed, what it asks of the appliance)
    "pause_forwarding": ("operator", "stop sending to ZeroBus; collection and spooling continue"),
    "resume_forwarding": ("operator", "resume sending to ZeroBus"),
    "checkpoint_wal": ("operator", "run PRAGMA wal_checkpoint(TRUNCATE) in the writer"),
    "run_preflight": ("operator", "run the go-live preflight (edge doctor) from the appliance and store the result"),
    "run_source_checks": ("operator", "check every source from the appliance (edge doctor --sources): reach, security, "
                          "login and a sample read; store the result"),
    "retry_dead_letter": ("admin", "re-append a dead-lettered record as a new reading (new seq)"),
}
MAX_PENDING = 100


class CommandError(ValueError):
    pass


def directory(cfg: Any) -> Path:
    """Where requests live for this appliance config (both the admin page and the runner call this)."""
    admin = getattr(cfg, "admin", None)
    if admin is not None and admin.commands_dir:
        return Path(admin.commands_dir)
    return Path(cfg.data_dir) / "admin-commands"


def _write_atomic(path: Path, obj: dict) -> None:
    write_atomic(path, json.dumps(obj, sort_keys=True).encode(), mode=0o640)


_last_ns = 0


def submit(directory: str | Path, action: str, args: dict[str, Any] | None, by: str) -> dict:
    if action not in ACTIONS:
        raise CommandError(f"unknown action {action!r}")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    if len(list(d.glob("*.json"))) >= MAX_PENDING:
        raise CommandError(f"{MAX_PENDING} requests are already waiting; the appliance is not picking them up")
    now = time.time()
    # Nanoseconds, strictly increasing in this process: two requests in one millisecond were
    # once ordered by their random suffix, so a queue could run them out of order.
    global _last_ns
    _last_ns = max(time.time_ns(), _last_ns + 1)
    cmd_id = f"{_last_ns:019d}-{secrets.token_hex(4)}"
    rec = {"id": cmd_id, "action": action, "args": dict(args or {}), "by": by, "ts": now,
           "status": "pending", "detail": "", "done_ts": None}
    _write_atomic(d / f"{cmd_id}.json", rec)
    return rec


def _read(path: Path) -> dict | None:
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and rec.get("action") in ACTIONS else None


def pending(directory: str | Path) -> list[dict]:
    """Waiting requests, oldest first (the appliance side calls this)."""
    d = Path(directory)
    if not d.is_dir():
        return []
    return [r for p in sorted(d.glob("*.json")) if (r := _read(p))]


def complete(directory: str | Path, cmd_id: str, ok: bool, detail: str = "") -> None:
    """Mark a request honoured (``ok``) or refused, moving it out of the queue."""
    d = Path(directory)
    src = d / f"{cmd_id}.json"
    rec = _read(src)
    if rec is None:
        raise CommandError(f"no pending request {cmd_id!r}")
    rec.update(status="done" if ok else "refused", detail=str(detail)[:500], done_ts=time.time())
    (d / "done").mkdir(exist_ok=True)
    _write_atomic(d / "done" / f"{cmd_id}.json", rec)
    src.unlink(missing_ok=True)
    _prune(d / "done", keep=200)


def _prune(d: Path, keep: int) -> None:
    files = sorted(d.glob("*.json"))
    for p in files[:-keep]:
        p.unlink(missing_ok=True)


def process(directory: str | Path, handlers: dict[str, Callable[[dict], str | None]]) -> int:
    """For the appliance: honour every pending request, oldest first; returns how many were handled.

    ``handlers`` maps an action to ``fn(args) -> detail``; raising refuses the request with the
    error's text. An action without a handler is refused as unsupported, so the operator sees an
    answer instead of a request pending forever.
    """
    n = 0
    for rec in pending(directory):
        fn = handlers.get(rec["action"])
        if fn is None:
            complete(directory, rec["id"], ok=False, detail="not supported by this appliance")
        else:
            try:
                detail = fn(rec.get("args") or {})
            except Exception as exc:  # noqa: BLE001 - the refusal reason is the operator's answer
                complete(directory, rec["id"], ok=False, detail=f"{type(exc).__name__}: {exc}")
            else:
                complete(directory, rec["id"], ok=True, detail=detail or "")
        n += 1
    return n


def waiting(directory: str | Path, action: str) -> bool:
    """Whether a request for ``action`` is still pending (the page does not queue a second one)."""
    return any(r["action"] == action for r in pending(directory))


def recent(directory: str | Path, limit: int = 20) -> list[dict]:
    """Pending and finished requests, newest first, for the page."""
    d = Path(directory)
    if not d.is_dir():
        return []
    paths = sorted(d.glob("*.json")) + sorted((d / "done").glob("*.json"))
    recs = [r for p in paths if (r := _read(p))]
    recs.sort(key=lambda r: r.get("ts") or 0, reverse=True)
    return recs[:limit]


def pause_requested(directory: str | Path) -> bool | None:
    """What the latest pause/resume request asked for (None when never asked)."""
    for rec in recent(directory, limit=200):
        if rec["action"] == "pause_forwarding":
            return True
        if rec["action"] == "resume_forwarding":
            return False
    return None
