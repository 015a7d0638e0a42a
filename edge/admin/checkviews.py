"""The source checks page (``/sources/checks``) and its JSON twin (``/api/source-checks``).

The page cannot reach the OT network's servers: an operator requests a run
(``run_source_checks``, through ``views``' actions), the appliance runs ``edge doctor --sources``
and stores the rows as state ``source_checks/last``; this page shows them, built like the preflight page
(``views.check_page``, templates/_checks.html). Routes join the
admin blueprint when ``app.py`` imports this module.
"""

from __future__ import annotations

from flask import jsonify

from edge.admin.access import require
from edge.admin.views import bp, check_page, check_report
from edge.control import sourcereport

BADGES = {"PASS": "ok", "WARN": "warn", "FAIL": "bad", "SKIP": "idle"}


@bp.get("/sources/checks")
def source_checks_page():
    return check_page("source_checks.html", sourcereport, badges=BADGES)


@bp.get("/api/source-checks")
def api_source_checks():
    require("viewer")
    return jsonify(check_report(sourcereport))
