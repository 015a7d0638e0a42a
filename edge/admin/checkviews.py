"""The source checks page (``/sources/checks``) and its JSON twin (``/api/source-checks``).

The page cannot reach the OT network's servers: an operator requests a run
(``run_source_checks``, through ``views``' actions), the appliance runs ``edge doctor --sources``
and stores the rows as state ``source_checks/last``; this page shows them. Routes join the
admin blueprint when ``app.py`` imports this module.
"""

from __future__ import annotations

import time

from flask import jsonify, render_template

from edge.admin import reading
from edge.admin.access import current_role, require, st
from edge.admin.views import bp
from edge.control import commands, sourcereport

BADGES = {"PASS": "ok", "WARN": "warn", "FAIL": "bad", "SKIP": "idle"}


def _document() -> dict:
    states, err = reading.read_states(st().cfg.spool.path, sourcereport.KIND)
    return sourcereport.document(states, commands.recent(st().commands_dir, 100), now=time.time(), spool_error=err)


@bp.get("/sources/checks")
def source_checks_page():
    require("viewer")
    return render_template("source_checks.html", p=_document(), role=current_role(), now=time.time(), badges=BADGES,
                           refresh=int(st().admin.refresh), effect=commands.ACTIONS[sourcereport.ACTION][1])


@bp.get("/api/source-checks")
def api_source_checks():
    require("viewer")
    return jsonify(_document())
