"""Routes. Every page has a JSON twin under /api/ (documented in edge/admin/README.md)."""

from __future__ import annotations

import time
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, abort, flash, g, jsonify, redirect, render_template, request, session, url_for

from edge.admin import auth, model, payloads, reading
from edge.admin.access import check_csrf, current_role, probe_allowed, require, st, try_login
from edge.admin.charts import line_chart
from edge.admin.metrics import render as render_metrics
from edge.admin.settings import ROLES
from edge.control import commands, preflight, sourcereport

bp = Blueprint("admin", __name__)
RATE_MEMORY_S = 120.0


def _source_rates(states: dict) -> dict[str, tuple[float, float]]:
    """An earlier (ts, readings_total) per source seen by this worker, for a readings/s figure."""
    s = st()
    out = {}
    for name, rec in (states.get("source") or {}).items():
        ts, total = rec.get("updated_ts"), rec.get("readings_total")
        if not isinstance(ts, (int, float)) or not isinstance(total, (int, float)):
            continue
        pts = s.source_points.setdefault(name, [])
        if not pts or pts[-1][0] != ts:
            pts.append((float(ts), float(total)))
        while len(pts) > 2 and pts[1][0] < ts - RATE_MEMORY_S:
            pts.pop(0)
        if len(pts) >= 2 and pts[0][0] < ts:
            out[name] = pts[0]
    return out


def _status(with_samples: bool) -> tuple[dict, reading.Snapshot]:
    s = st()
    now = time.time()
    snap = reading.read(s.cfg.spool.path, since_ts=now - float(s.admin.chart_window) if with_samples else None)
    z = s.cfg.zerobus
    doc = model.status(
        appliance_id=s.cfg.appliance_id, stats=snap.stats, states_by_kind=snap.states, samples=snap.samples,
        version=s.version, started=s.started, now=now, stale_after=float(s.admin.forwarder_stale_after),
        quiet_allowance={"blocked": float(z.blocked_retry), "backing_off": float(z.reconnect_max)},
        spool_error=snap.error, source_rates=_source_rates(snap.states),
        pause_requested=commands.pause_requested(s.commands_dir),
    )
    doc["config"] = {
        "when_full": s.cfg.spool.when_full, "max_bytes": int(s.cfg.spool.max_bytes),
        "endpoint": z.endpoint, "table": z.table, "refresh_s": float(s.admin.refresh),
    }
    return doc, snap


def _charts(doc: dict, snap: reading.Snapshot) -> dict:
    now = doc["generated_ts"]
    t0 = now - float(st().admin.chart_window)
    if snap.samples:
        # A young spool: span what exists (at least a minute) instead of hours of empty axis.
        t0 = max(t0, min(x["ts"] for x in snap.samples))
    t0 = min(t0, now - 60)
    cuts = [(c["down_ts"], c["up_ts"]) for c in doc["drills"]]
    depth = [(x["ts"], x["depth"]) for x in snap.samples if x["depth"] is not None]
    rate_series = [("ingest", model.rates(snap.samples, "in"), "s-in"),
                   ("drain", model.rates(snap.samples, "out"), "s-out")]
    out = {}
    # Two renderings per chart; CSS shows the narrow one on phones so its text stays legible.
    for suffix, width, extra in (("", 520, ""), ("_narrow", 340, " narrow")):
        out["depth" + suffix] = line_chart([("undelivered", depth, "s-depth")], t0=t0, t1=now, title="Spool depth",
                                           unit="readings", marks=cuts, width=width, css=extra)
        out["rates" + suffix] = line_chart(rate_series, t0=t0, t1=now, title="Ingest and drain", unit="readings/s",
                                           marks=cuts, width=width, css=extra)
    return out


# ---------------------------------------------------------------- pages


@bp.get("/")
def index():
    require("viewer")
    doc, snap = _status(with_samples=True)
    last_preflight = preflight.document(snap.states.get(preflight.KIND) or {}, [], now=doc["generated_ts"])["last"]
    return render_template("dashboard.html", s=doc, charts=_charts(doc, snap), role=current_role(),
                           recent=commands.recent(st().commands_dir, 8), actions=commands.ACTIONS,
                           preflight=last_preflight,
                           refresh=int(st().admin.refresh), now=doc["generated_ts"], read_ms=snap.read_ms)


def _items(what: str):
    limit = max(1, min(request.args.get("limit", 50, type=int) or 50, 500))
    rows, err = reading.read_items(st().cfg.spool.path, what, limit)
    conv = payloads.dead_letter if what == "dead_letters" else payloads.quarantined
    return [conv(r) for r in rows], err, limit


ITEM_PAGES = {"dead_letters": "Dead letters", "quarantine": "Quarantined payloads"}


@bp.get("/dead-letters", endpoint="dead_letters_page", defaults={"kind": "dead_letters"})
@bp.get("/quarantine", endpoint="quarantine_page", defaults={"kind": "quarantine"})
def items_page(kind: str):
    require("viewer")
    items, err, limit = _items(kind)
    return render_template("items.html", kind=kind, title=ITEM_PAGES[kind], items=items, error=err,
                           limit=limit, role=current_role(), now=time.time())


def check_report(report: ModuleType) -> dict:
    """The document of a check run on request (``report``: ``edge.control.preflight`` or ``sourcereport``):
    its last stored run and its recent requests; the page and its JSON twin show the same."""
    states, err = reading.read_states(st().cfg.spool.path, report.KIND)
    return report.document(states, commands.recent(st().commands_dir, 100), now=time.time(), spool_error=err)


def check_page(template: str, report: ModuleType, **extra: Any) -> str:
    """A page of checks (templates/_checks.html) with its request button."""
    require("viewer")
    return render_template(template, p=check_report(report), role=current_role(), now=time.time(),
                           refresh=int(st().admin.refresh), effect=commands.ACTIONS[report.ACTION][1], **extra)


@bp.get("/preflight")
def preflight_page():
    return check_page("preflight.html", preflight)


# ---------------------------------------------------------------- login


def _safe_next(target: str | None) -> str:
    # Only local paths: an open redirect would hand a fresh session's user to another site.
    if (not target or not target.startswith("/") or target.startswith("//") or "\\" in target
            or urlsplit(target).netloc):
        return url_for("admin.index")
    return target


@bp.route("/login", methods=["GET", "POST"])
def login():
    s = st()
    error, status = None, 200
    chosen = request.form.get("user") or request.args.get("user") or ""
    if request.method == "POST":
        if not auth.csrf_ok(session.get("csrf"), request.form.get("csrf")):
            error, status = "The form expired; please try again.", 400
            if s.admin.secure_cookies and not request.is_secure:
                # The usual lab mistake: browsers never send a Secure cookie back over plain HTTP.
                error += (" This page is served over plain HTTP while session cookies are Secure: serve it over "
                          "HTTPS, or set admin.secure_cookies: false for lab use.")
        elif chosen not in ROLES:
            error, status = "Choose who you sign in as.", 400
        else:
            ok, wait = try_login(chosen, request.form.get("password", ""), "form")
            if ok:
                session.clear()
                session.regenerate()  # a new id: one planted before the login is worth nothing after it
                session.permanent = True
                session.update(role=chosen, csrf=auth.new_csrf_token())
                return redirect(_safe_next(request.form.get("next")))
            if wait > 0:
                error, status = f"Too many failed attempts. Try again in {int(wait)} s.", 429
            else:
                error, status = "Wrong password.", 401
    resp = render_template("login.html", error=error, next=request.values.get("next", ""), roles=ROLES,
                           chosen=chosen if chosen in ROLES else "viewer", appliance_id=s.cfg.appliance_id, role=None)
    return resp, status


@bp.post("/logout")
def logout():
    if current_role() is not None:
        check_csrf()
    # Deletes the server-side record: a copy of the cookie is worth nothing from now on.
    session.clear()
    return redirect(url_for("admin.login"))


# ---------------------------------------------------------------- actions


def _act(action: str) -> dict:
    if action not in commands.ACTIONS:
        abort(404)
    require(commands.ACTIONS[action][0])
    check_csrf()
    args = {}
    if action == "retry_dead_letter":
        raw = request.form.get("id") if not request.is_json else (request.get_json(silent=True) or {}).get("id")
        try:
            args["id"] = int(raw)
        except (TypeError, ValueError):
            abort(400, description="retry_dead_letter needs the dead letter's id")
    if action in (preflight.ACTION, sourcereport.ACTION) and commands.waiting(st().commands_dir, action):
        # A run takes up to a couple of minutes on the appliance; a second click would only queue a repeat.
        what = "preflight" if action == preflight.ACTION else "source check"
        abort(409, description=f"a {what} run is already requested; its result shows here when the appliance has run it")
    try:
        return commands.submit(st().commands_dir, action, args, by=current_role() or "?")
    except commands.CommandError as exc:
        abort(409, description=str(exc))
    except OSError as exc:
        abort(503, description=f"cannot record the request in {st().commands_dir}: {exc.strerror}")


@bp.post("/actions/<action>")
def action_form(action: str):
    rec = _act(action)
    flash(f"Request '{action.replace('_', ' ')}' queued ({rec['id']}); the appliance picks it up on its next pass.")
    back = request.form.get("back")
    return redirect(_safe_next(back) if back else url_for("admin.index"))


@bp.post("/api/actions/<action>")
def action_api(action: str):
    return jsonify(_act(action)), 202


# ---------------------------------------------------------------- JSON twins


@bp.get("/api/status")
def api_status():
    require("viewer")
    doc, _ = _status(with_samples=True)
    return jsonify(doc)


@bp.get("/api/sources")
def api_sources():
    require("viewer")
    doc, _ = _status(with_samples=False)
    return jsonify(sources=doc["sources"])


@bp.get("/api/samples")
def api_samples():
    require("viewer")
    _, snap = _status(with_samples=True)
    return jsonify(samples=snap.samples, error=snap.error)


@bp.get("/api/dead-letters", endpoint="api_dead_letters", defaults={"kind": "dead_letters"})
@bp.get("/api/quarantine", endpoint="api_quarantine", defaults={"kind": "quarantine"})
def api_items(kind: str):
    require("viewer")
    items, err, _ = _items(kind)
    return jsonify(items=items, error=err)


@bp.get("/api/commands")
def api_commands():
    require("viewer")
    return jsonify(commands=commands.recent(st().commands_dir, 100), actions={
        k: {"role": r, "effect": e} for k, (r, e) in commands.ACTIONS.items()})


@bp.get("/api/preflight")
def api_preflight():
    require("viewer")
    return jsonify(check_report(preflight))


@bp.get("/api/whoami")
def api_whoami():
    require("viewer")
    return jsonify(role=current_role())


# ---------------------------------------------------------------- probes


@bp.get("/metrics")
def metrics():
    if not probe_allowed():
        abort(401)
    doc, snap = _status(with_samples=False)
    fwd = (snap.states.get("forwarder") or {}).get("main")
    return Response(render_metrics(doc, snap.stats, fwd), mimetype="text/plain; version=0.0.4; charset=utf-8")


@bp.get("/healthz")
def healthz():
    if not probe_allowed():
        abort(401)
    return jsonify(status="ok", version=st().version)


@bp.get("/readyz")
def readyz():
    if not probe_allowed():
        abort(401)
    doc, _ = _status(with_samples=False)
    problems = []
    if not doc["health"]["spool_readable"]:
        problems.append(f"spool not readable: {doc['health']['spool_error']}")
    if doc["uplink"]["stale"]:
        age = doc["uplink"]["state_age_s"]
        problems.append("no forwarder state recorded" if age is None else f"forwarder state is {age:.0f}s old")
    body = {"ready": not problems, "problems": problems, "forwarder_state": doc["uplink"]["state"]}
    return jsonify(body), (200 if not problems else 503)


@bp.app_errorhandler(401)
def _unauth(e):
    if request.path.startswith("/api/") or request.path in ("/metrics", "/healthz", "/readyz"):
        return jsonify(error="authentication required"), 401
    return redirect(url_for("admin.login"))


@bp.app_errorhandler(403)
def _forbidden(e):
    if request.path.startswith("/api/"):
        return jsonify(error="your role may not do this"), 403
    return render_template("error.html", code=403, message="Your role may not do this.", role=current_role()), 403


@bp.app_errorhandler(400)
@bp.app_errorhandler(404)
@bp.app_errorhandler(409)
@bp.app_errorhandler(413)
@bp.app_errorhandler(415)
@bp.app_errorhandler(429)
@bp.app_errorhandler(503)
def _client_error(e):
    msg = getattr(e, "description", "") or e.name
    if request.path.startswith("/api/") or request.is_json:
        return jsonify(error=msg), e.code
    return render_template("error.html", code=e.code, message=msg, role=g.get("role")), e.code
