"""The go-live preflight requested from the admin page is run by the real appliance (`edge run`) against the
ZeroBus emulator and the workspace stand-in, stored as state ``preflight/last`` and shown by /api/preflight."""

from __future__ import annotations

import base64
import json
import time

from edge.admin import create_app
from edge.config import parse
from edge.control import commands, preflight
from edge.spool import SpoolReader
from tests.admin.conftest import ENV, PASSWORDS
from simulators.kit.edgeproc import EdgeRun
from simulators.kit.emulator import Emulator
from simulators.kit.workspace import Workspace
from tests.test_operator_requests import wait_done

SECRET = "e2e-client-secret-never-stored-9f3a"  # the emulator accepts any pair; this one must never be stored
ALL_CHECKS = ["dns workspace", "tcp workspace", "dns zerobus endpoint", "tcp zerobus endpoint", "oauth token",
              "clock skew", "table exists", "table managed delta", "table schema", "zerobus write"]


def stored(edge: EdgeRun) -> dict:
    with SpoolReader(edge.spool_path) as r:
        rows = r.states(preflight.KIND)
    assert [x["name"] for x in rows] == [preflight.NAME]
    return rows[0]["value"]


def run_preflight(tmp, emu, ws) -> tuple[EdgeRun, dict, dict, dict]:
    """One appliance, one request: (edge, request outcome, stored record, /api/preflight) - edge already stopped."""
    tmp.mkdir()
    cfg = {"appliance_id": "plant-preflight", "zerobus": {"workspace_url": ws.url, "client_secret": SECRET},
           "sources": [{"name": "demo", "type": "synthetic", "rate": 20, "points": 2}]}
    with EdgeRun(tmp, cfg, emulator=emu) as edge:
        directory = tmp / "data" / "admin-commands"
        t0 = time.time()
        done = wait_done(directory, commands.submit(directory, "run_preflight", {}, by="operator")["id"], 60)
        rec = stored(edge)
        assert rec["ts"] >= t0 and rec["started_ts"] >= t0
        # The admin page on the same config and spool (HTTP Basic: no cookie over plain http needed).
        app = create_app(parse(edge.config, env={}), env=ENV)
        basic = base64.b64encode(f"viewer:{PASSWORDS['viewer']}".encode()).decode()
        doc = app.test_client().get("/api/preflight", headers={"Authorization": f"Basic {basic}"}).json
    for text in (json.dumps(done), json.dumps(rec), json.dumps(doc), (tmp / "edge.log").read_text()):
        assert SECRET not in text
    return edge, done, rec, doc


def test_preflight_requested_from_the_page_runs_on_the_appliance(tmp_path):
    with Emulator() as emu:
        with Workspace(emu) as ws:
            _, done, rec, doc = run_preflight(tmp_path / "good", emu, ws)
        assert done["status"] == "done" and done["detail"] == f"all {len(ALL_CHECKS)} checks passed", done
        assert [c["name"] for c in rec["checks"]] == ALL_CHECKS
        assert all(c["ok"] for c in rec["checks"]), [c for c in rec["checks"] if not c["ok"]]
        assert rec["ok"] is True and rec["passed"] == rec["total"] == len(ALL_CHECKS)
        assert doc["last"]["ok"] is True and [c["name"] for c in doc["last"]["checks"]] == ALL_CHECKS
        assert doc["pending"] is False and doc["requests"][0]["status"] == "done"
        assert emu.table_stats()["streams_opened"] >= 2  # the forwarder's stream and the write check's

        with Workspace(emu, tables=()) as ws:
            _, done, rec, doc = run_preflight(tmp_path / "no-table", emu, ws)
        checks = {c["name"]: c for c in rec["checks"]}
        assert done["status"] == "done" and "failed: table exists" in done["detail"], done
        assert rec["ok"] is False and not checks["table exists"]["ok"]
        assert "edge table create" in checks["table exists"]["hint"]
        assert checks["oauth token"]["ok"] and checks["zerobus write"]["ok"]  # only the table is missing
        assert doc["last"]["ok"] is False
