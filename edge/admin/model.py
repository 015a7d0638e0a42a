"""Pure view model: spool stats, state records and samples -> what the page shows.

No I/O. ``status(...)`` builds the document served as ``/api/status`` and
rendered as ``/``; every number the operator sees comes from here, so the page,
the JSON twin and ``/metrics`` agree. The spool's stats dict is read
tolerantly (``_num``): a key the spool does not provide shows as unknown
instead of breaking the page during an outage.

Size: ~460 lines, on purpose: one document (overall verdict, spool, forwarder, sources,
trends) whose parts read the same stats; split, each part would re-derive the others' figures.
"""

from __future__ import annotations

import time
from typing import Any, Iterable, Mapping

from edge.sources.states import SEVERITY as SOURCE_SEVERITY

# The states the forwarder records (edge/forward/telemetry.py; "disabled" is the runner's when it does not
# forward). The page adds "egress_down" (failing since a cut began) and "unknown" (no record).
FORWARDER_STATES = ("starting", "connecting", "streaming", "stalled", "idle", "backing_off", "blocked", "paused",
                    "stopped", "disabled")
# Severity drives the colour of a state badge: ok / warn / bad / idle. Source states and theirs
# come from edge.sources.states (one enum for every collector); the rest are the forwarder's.
SEVERITY = {
    "streaming": "ok", "idle": "ok", "backing_off": "warn", "paused": "warn", "stale": "warn",
    "egress_down": "bad", "stalled": "bad", "disabled": "idle", "unknown": "idle",
    **{state.value: sev for state, sev in SOURCE_SEVERITY.items()},
}


def severity(state: str | None) -> str:
    return SEVERITY.get(state or "unknown", "warn")


def _num(d: Mapping[str, Any] | None, *keys: str) -> float | None:
    """First numeric value among ``keys`` (dotted keys walk nested dicts)."""
    if not d:
        return None
    for key in keys:
        cur: Any = d
        for part in key.split("."):
            cur = cur.get(part) if isinstance(cur, Mapping) else None
        if isinstance(cur, bool):
            continue
        if isinstance(cur, (int, float)):
            return cur
    return None


def _str(d: Mapping[str, Any] | None, *keys: str) -> str | None:
    if not d:
        return None
    for key in keys:
        v = d.get(key)
        if isinstance(v, str) and v:
            return v
    return None


def _ts(v: Any) -> float | None:
    """A timestamp in seconds; state records may carry microseconds."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return v / 1e6 if v > 1e11 else float(v)


def normalize_states(raw: Any) -> dict[str, dict]:
    """``states(kind)`` may be a mapping name -> record or a list of records with a name."""
    out: dict[str, dict] = {}
    if isinstance(raw, Mapping):
        items = raw.items()
    else:
        items = []
        for rec in raw or []:
            if isinstance(rec, Mapping):
                name = rec.get("name")
                obj = rec.get("obj", rec.get("value", rec.get("state_obj", rec)))
                upd = rec.get("updated_ts")
                if isinstance(obj, Mapping) and upd is not None and "updated_ts" not in obj:
                    obj = {**obj, "updated_ts": upd}
                items.append((name, obj))
            elif isinstance(rec, (tuple, list)) and len(rec) >= 2:
                name, obj = (rec[1], rec[2]) if len(rec) >= 3 else (rec[0], rec[1])
                if len(rec) >= 4 and isinstance(obj, Mapping):
                    obj = {**obj, "updated_ts": rec[3]}
                items.append((name, obj))
    for name, obj in items:
        if name is None:
            continue
        out[str(name)] = dict(obj) if isinstance(obj, Mapping) else {"value": obj}
    return out


# The spool's stats_samples columns (edge/spool/queries.py) under the names the page uses.
SAMPLE_KEYS = {"ts": "ts", "depth": "depth_rows", "bytes": "depth_bytes", "in": "appended_total", "out": "delivered_total"}


def normalize_samples(raw: Iterable[Any] | None) -> list[dict[str, float]]:
    """Samples as ``{ts, depth, bytes, in, out}`` sorted by time; ``in``/``out`` are counters."""
    out = []
    for s in raw or []:
        if type(s) is dict and "ts" in s and "depth_rows" in s and "appended_total" in s:
            # A whole row as the spool stores it: the fast path (a 6 h chart is ~10k samples).
            out.append({"ts": s["ts"], "depth": s["depth_rows"], "bytes": s.get("depth_bytes"),
                        "in": s["appended_total"], "out": s.get("delivered_total")})
            continue
        if not isinstance(s, Mapping):
            continue
        row = {k: _num(s, name) for k, name in SAMPLE_KEYS.items()}
        row["ts"] = _ts(row["ts"])
        if row["ts"] is None:
            continue
        out.append(row)
    out.sort(key=lambda r: r["ts"])
    return out


def rates(samples: list[dict], key: str) -> list[tuple[float, float]]:
    """Per-second rate of counter ``key`` between consecutive samples (counter resets give no point)."""
    pts = []
    prev = None
    for s in samples:
        if s.get(key) is None:
            continue
        if prev is not None and s["ts"] > prev["ts"] and s[key] >= prev[key]:
            pts.append((s["ts"], (s[key] - prev[key]) / (s["ts"] - prev["ts"])))
        prev = s
    return pts


def _last_progress(samples: list[dict], before: float) -> float | None:
    """The last sample at or before ``before`` whose delivered counter moved: delivery was alive then."""
    last, prev = None, None
    for s in samples:
        if s["ts"] > before:
            break
        if s.get("out") is not None:
            if prev is not None and s["out"] > prev:
                last = s["ts"]
            prev = s["out"]
    return last


def drill_timeline(cuts: Iterable[Any], samples: list[dict], now: float, last_ack_ts: float | None = None) -> list[dict]:
    """Each egress cut (from the forwarder's history) with its backlog peak and drain time.

    The forwarder records when it detected a cut (its first failure, which can come an ack
    timeout after the link died), when delivery recovered and when the backlog was drained.
    The cut is dated from the last ack before it: the forwarder's ``last_ack_ts`` for the
    open cut, the last sample whose delivered counter moved for earlier ones (``detected_ts``
    keeps the forwarder's time). The spool's samples add the peak depth the backlog reached.
    """
    out = []
    for cut in cuts or []:
        if not isinstance(cut, Mapping):
            continue
        detected = _ts(cut.get("started_ts"))
        up = _ts(cut.get("recovered_ts"))
        if detected is None:
            continue
        ack = last_ack_ts if cut.get("open") and last_ack_ts is not None else _last_progress(samples, detected)
        down = ack if ack is not None and ack <= detected else detected
        drained = _ts(cut.get("drained_ts"))
        end = drained if drained is not None else now
        window = [s for s in samples if down <= s["ts"] <= end and s["depth"] is not None]
        peak = _num(cut, "backlog_peak")
        peak_ts = None
        if window:
            top = max(window, key=lambda s: s["depth"])
            if peak is None or top["depth"] >= peak:
                peak, peak_ts = top["depth"], top["ts"]
        out.append({
            "down_ts": down,
            "detected_ts": detected,
            "up_ts": up,
            "drained_ts": drained,
            "outage_s": (up if up is not None else now) - down,
            "ongoing": up is None,
            "draining": up is not None and drained is None,
            "backlog_start": _num(cut, "backlog_start"),
            "peak_depth": peak,
            "peak_ts": peak_ts,
            "drain_s": (drained - up) if drained is not None and up is not None else None,
            "errors": int(_num(cut, "errors") or 0),
        })
    out.sort(key=lambda c: c["down_ts"], reverse=True)
    return out


def _errors(fwd: Mapping[str, Any]) -> list[dict]:
    raw = fwd.get("recent_errors")
    out = []
    for e in raw if isinstance(raw, list) else []:
        if isinstance(e, Mapping):
            out.append({"ts": _ts(e.get("ts")), "message": str(e.get("reason") or "")[:500],
                        "kind": str(e.get("kind") or "")[:40], "phase": str(e.get("phase") or "")[:40]})
    out.sort(key=lambda e: e["ts"] or 0, reverse=True)
    # A link that is down fails the same way every retry: one line with a count says more than twenty.
    grouped: list[dict] = []
    for e in out:
        if grouped and (grouped[-1]["phase"], grouped[-1]["message"]) == (e["phase"], e["message"]):
            grouped[-1]["count"] += 1
            grouped[-1]["first_ts"] = e["ts"]
        else:
            grouped.append({**e, "count": 1, "first_ts": e["ts"]})
    return grouped[:20]


def uplink(fwd: Mapping[str, Any] | None, stats: Mapping[str, Any], now: float, stale_after: float,
           pause_requested: bool | None = None, quiet_allowance: Mapping[str, float] | None = None) -> dict:
    """The forwarder's state as the operator reads it.

    ``quiet_allowance``: extra seconds a state may go without a heartbeat (a blocked
    forwarder sleeps ``blocked_retry`` between attempts) before it counts as stale.
    """
    fwd = fwd or {}
    raw_state = _str(fwd, "state")
    state = raw_state or "unknown"
    cuts = fwd.get("egress_cuts") or []
    open_cut = next((c for c in cuts if isinstance(c, Mapping) and c.get("open") and not c.get("recovered_ts")), None)
    if open_cut is not None and state in ("backing_off", "connecting"):
        # Failing since a cut began and not delivered since: the link itself is down, not one request.
        state = "egress_down"
    updated = _ts(fwd.get("updated_ts"))
    age = (now - updated) if updated is not None else None
    allowance = (quiet_allowance or {}).get(raw_state or "", 0.0)
    stale = not fwd or age is None or age > stale_after + allowance
    last_ack = _ts(fwd.get("last_ack_ts"))
    drain = _num(stats, "drain_rate_10s")
    return {
        "state": state,
        "state_raw": raw_state,
        "severity": "warn" if stale and state not in ("disabled", "stopped") else severity(state),
        "reason": str(fwd.get("reason") or "")[:500],
        "since_ts": _ts(fwd.get("since")),
        "stale": stale,
        "updated_ts": updated,
        "state_age_s": age,
        "last_ack_ts": last_ack,
        "last_ack_age_s": (now - last_ack) if last_ack is not None else None,
        "last_ack_seq": _num(fwd, "last_ack_seq"),
        "acked_seq": _num(fwd, "acked_seq"),
        "sent_seq": _num(fwd, "sent_seq"),
        "acked_total": _num(fwd, "acked_total"),
        "drain_rate": drain,
        "batches_in_flight": _num(fwd, "batches_in_flight"),
        "backoff_attempt": _num(fwd, "backoff_attempt"),
        "streams": _num(fwd, "streams"),
        "endpoint": _str(fwd, "endpoint"),
        "table": _str(fwd, "table"),
        "errors": _errors(fwd),
        "failures_total": _num(fwd, "failures_total"),
        # What binds the drain now and the figures behind it (edge/forward/pace.py).
        "drain": dict(fwd["drain"]) if isinstance(fwd.get("drain"), Mapping) else {},
        "cut_open_since_ts": _ts(open_cut.get("started_ts")) if open_cut else None,
        "paused": state == "paused",
        "pause_requested": pause_requested,
    }


def sources(records: Mapping[str, dict], now: float, previous: Mapping[str, tuple[float, float]] | None = None) -> list[dict]:
    """One row per collector. ``previous`` maps name -> (ts, readings_total) seen earlier, for a rate."""
    out = []
    for name in sorted(records):
        r = records[name]
        total = _num(r, "readings_total") or 0
        updated = _ts(r.get("updated_ts")) or now
        last = _ts(r.get("last_reading_ts"))
        rate = _num(r, "rate")
        if rate is not None and (last is None or now - last > 15):
            rate = 0.0  # the source's own rate is from its last window; nothing has arrived since
        if rate is None and previous and name in previous:
            t0, c0 = previous[name]
            if updated > t0 and total >= c0:
                rate = (total - c0) / (updated - t0)
        offline = r.get("devices_offline") or []
        state = _str(r, "state") or "unknown"
        out.append({
            "name": name,
            "type": _str(r, "type") or "",
            "state": state,
            "severity": severity(state),
            "detail": str(r.get("detail") or "")[:300],
            "since_ts": _ts(r.get("since_ts")),
            "last_reading_ts": last,
            "last_reading_age_s": (now - last) if last is not None else None,
            "readings_total": int(total),
            "rate": rate,
            "errors_total": int(_num(r, "errors_total") or 0),
            "last_error": str(r.get("last_error") or "")[:500],
            "last_error_ts": _ts(r.get("last_error_ts")),
            "quarantined_total": int(_num(r, "quarantined_total") or 0),
            "devices_offline": [str(d)[:120] for d in offline][:50] if isinstance(offline, list) else [],
            "updated_ts": _ts(r.get("updated_ts")),
            # Intervals a source lost at the source (OPC-UA: nothing in history to back-fill them).
            "gaps_open": int(_num(r, "gaps_open") or 0),
            "gap_seconds": _num(r, "gap_seconds") or 0.0,
            "gaps": _gaps(r.get("gaps")),
        })
    return out


def _gaps(raw: Any) -> list[dict]:
    """The newest gaps a source lists (point, start_ts, end_ts, seconds, reason), newest first."""
    out = []
    for g in raw if isinstance(raw, list) else []:
        if isinstance(g, Mapping) and _ts(g.get("start_ts")) is not None and _ts(g.get("end_ts")) is not None:
            out.append({"point": str(g.get("point") or "")[:200], "start_ts": _ts(g["start_ts"]),
                        "end_ts": _ts(g["end_ts"]), "seconds": _num(g, "seconds") or 0.0,
                        "reason": str(g.get("reason") or "")[:60]})
    return out[::-1][:20]


def _dropped(stats: Mapping[str, Any]) -> dict[str, int]:
    raw = stats.get("dropped") or {}
    return {str(k): int(v) for k, v in raw.items() if isinstance(v, (int, float))} if isinstance(raw, Mapping) else {}


def backlog(stats: Mapping[str, Any], now: float) -> dict:
    depth = _num(stats, "depth_rows")
    used = _num(stats, "depth_bytes")
    budget = _num(stats, "budget_bytes")
    pct = _num(stats, "budget_used_pct")
    if pct is None and used is not None and budget:
        pct = round(100.0 * used / budget, 2)
    oldest_age = _num(stats, "oldest_age_s")
    return {
        "depth_rows": depth,
        "depth_bytes": used,
        "budget_bytes": budget,
        "budget_pct": pct,
        "oldest_age_s": oldest_age,
        "depth_seqs": _num(stats, "depth_seqs"),
        "ingest_rate": _num(stats, "ingest_rate_10s"),
        "ingest_rate_5m": _num(stats, "ingest_rate_5m"),
        "drain_rate": _num(stats, "drain_rate_10s"),
        "drain_rate_5m": _num(stats, "drain_rate_5m"),
        "runway_s": _num(stats, "runway_s"),
        "drain_eta_s": _num(stats, "drain_eta_s"),
        "next_seq": _num(stats, "next_seq"),
        "delivered_seq": _num(stats, "delivered_seq"),
        "when_full": _str(stats, "when_full"),
        **drain_outlook(_num(stats, "depth_seqs"), depth, _num(stats, "drain_eta_s"),
                        _num(stats, "ingest_rate_10s"), _num(stats, "drain_rate_10s")),
    }


NOT_DELIVERING = ("egress_down", "stalled", "blocked", "paused", "stopped")
CAUGHT_UP_S = 10.0  # draining at the ingest rate with no more than this many seconds of it waiting: live, not a queue


def drain_outlook(depth_seqs: float | None, depth_rows: float | None, eta_s: float | None,
                  ingest: float | None, drain: float | None) -> dict:
    """The "Time to drain" tile: ``drain_state`` (drained, caught_up, draining, falling_behind, stalled,
    unknown) with a value and a line of explanation an operator can trust."""
    depth = depth_seqs if depth_seqs is not None else depth_rows
    if depth is None:
        state, value, note = "unknown", "unknown", "no spool figures"
    elif depth <= 0:
        state, value, note = "drained", "drained", "nothing waiting"
    elif drain and drain >= 0.9 * (ingest or 0.0) and depth <= drain * CAUGHT_UP_S:
        state, value, note = "caught_up", "caught up", "delivering as readings arrive"
    elif eta_s is not None:
        state, value, note = "draining", None, "at the current net rate"
    elif drain:
        state, value, note = "falling_behind", "growing", "draining slower than ingest"
    else:
        state, value, note = "stalled", "stalled", "nothing delivered in the last 10 s"
    return {"drain_state": state, "drain_value": value, "drain_note": note}


def losses(stats: Mapping[str, Any]) -> dict:
    dropped = _dropped(stats)
    return {
        "dropped": dropped,
        "dropped_total": sum(dropped.values()),
        "loss_markers": int(_num(stats, "loss_markers_written") or 0),
        "dead_letters": int(_num(stats, "dead_lettered") or 0),
        "quarantined": int(_num(stats, "quarantined") or 0),
    }


def _alarms(stats: Mapping[str, Any]) -> list[dict]:
    """Alarm state records ``{"name", "value": {"message", "detail", "raised_ts"}}`` from the spool."""
    out = []
    for a in stats.get("alarms") or []:
        if not isinstance(a, Mapping):
            out.append({"code": "alarm", "message": str(a)[:500], "ts": None})
            continue
        v = a.get("value") if isinstance(a.get("value"), Mapping) else a
        out.append({"code": str(a.get("name") or v.get("code") or "alarm")[:80],
                    "message": str(v.get("message") or "")[:500],
                    "ts": _ts(v.get("raised_ts", a.get("updated_ts")))})
    return out


def health(stats: Mapping[str, Any], integrity: Mapping[str, Any] | None, *, version: str, started: float,
           now: float, spool_error: str | None, appliance_started: float | None) -> dict:
    integrity = integrity or {}
    return {
        "spool_readable": spool_error is None,
        "spool_error": spool_error,
        "spool_path": _str(stats, "path"),
        "schema_version": _num(stats, "schema_version"),
        "disk_free_bytes": _num(stats, "disk_free_bytes"),
        "wal_bytes": _num(stats, "wal_bytes"),
        "db_bytes": _num(stats, "db_bytes"),
        "integrity": _str(integrity, "result"),
        "integrity_checked_ts": _ts(integrity.get("checked_ts")),
        "alarms": _alarms(stats),
        "version": version,
        "appliance_uptime_s": (now - appliance_started) if appliance_started else None,
        "admin_uptime_s": now - started,
    }


def status(*, appliance_id: str, stats: Mapping[str, Any] | None, states_by_kind: Mapping[str, Mapping[str, dict]],
           samples: list[dict], version: str, started: float, now: float | None = None,
           stale_after: float = 60.0, quiet_allowance: Mapping[str, float] | None = None,
           spool_error: str | None = None, source_rates: Mapping[str, tuple[float, float]] | None = None,
           pause_requested: bool | None = None) -> dict:
    now = time.time() if now is None else now
    stats = stats or {}
    fwd = (states_by_kind.get("forwarder") or {}).get("main")
    up = uplink(fwd, stats, now, stale_after, pause_requested, quiet_allowance)
    srcs = sources(states_by_kind.get("source") or {}, now, source_rates)
    bl = backlog(stats, now)
    if up["state"] in NOT_DELIVERING and bl["drain_state"] not in ("drained", "unknown"):
        # The 10 s rates lag a cut by up to 10 s; the forwarder's own state says it now.
        bl.update(drain_state="stalled", drain_value="stalled",
                  drain_note=f"{'forwarding' if up['state'] == 'paused' else 'uplink'} "
                             f"{up['state'].replace('_', ' ')}: nothing is being delivered")
    integrity = (states_by_kind.get("integrity") or {}).get("readings")
    # The appliance's start: the earliest "since" among its parts still running.
    starts = [s["since_ts"] for s in srcs if s["since_ts"]] + ([up["since_ts"]] if up["since_ts"] else [])
    return {
        "appliance_id": appliance_id,
        "generated_ts": now,
        "backlog": bl,
        "uplink": up,
        "sources": srcs,
        "losses": losses(stats),
        "drills": drill_timeline((fwd or {}).get("egress_cuts") or [], samples, now, up["last_ack_ts"]),
        "health": health(stats, integrity, version=version, started=started, now=now, spool_error=spool_error,
                         appliance_started=_ts((fwd or {}).get("started_ts")) or (min(starts) if starts else None)),
        "overall": overall(bl, up, srcs, spool_error, stats),
    }


def overall(bl: Mapping[str, Any], up: Mapping[str, Any], srcs: list[dict], spool_error: str | None,
            stats: Mapping[str, Any]) -> dict:
    """One line for the top of the page: the worst thing an operator must know now."""
    if spool_error:
        return {"severity": "bad", "headline": "Spool unreadable", "detail": spool_error}
    alarms = _alarms(stats)
    if alarms:
        return {"severity": "bad", "headline": f"Spool alarm: {alarms[0]['code']}", "detail": alarms[0]["message"]}
    pct = bl.get("budget_pct") or 0
    if pct >= 90:
        return {"severity": "bad", "headline": f"Spool {pct:.0f}% full", "detail": "readings will be refused or dropped at 100%"}
    if up["state"] == "paused":
        return {"severity": "warn", "headline": "Forwarding paused", "detail": up["reason"] or "by an operator request"}
    if up["state"] in ("blocked", "egress_down", "stalled"):
        return {"severity": "bad", "headline": f"Uplink {up['state'].replace('_', ' ')}",
                "detail": up["reason"] or "readings are spooling locally"}
    if up["state"] in ("stopped", "unknown"):
        return {"severity": "warn", "headline": "Forwarder not running" if up["state"] == "stopped"
                else "No forwarder state", "detail": "readings are spooling locally; nothing is being delivered"}
    if up["stale"] and up["state"] not in ("disabled",):
        return {"severity": "warn", "headline": "Forwarder state stale", "detail": "no state update from the forwarder"}
    bad = [s["name"] for s in srcs if s["severity"] == "bad"]
    if up["state"] == "backing_off":
        return {"severity": "warn", "headline": "Uplink backing off", "detail": up["reason"]}
    if bad:
        return {"severity": "warn", "headline": f"{len(bad)} source(s) in trouble", "detail": ", ".join(bad[:5])}
    return {"severity": "ok", "headline": "Delivering", "detail": ""}
