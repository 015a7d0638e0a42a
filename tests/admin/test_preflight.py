"""The go-live preflight on the admin page: /preflight and /api/preflight for every role, the request button,
and the stored record never holding a secret."""

from __future__ import annotations

import base64
import json
import time

import pytest

from edge.control import commands, preflight
from edge.control.doctor import Check
from edge.spool import Spool
from edge.writer import SpoolWriter

from tests.admin.conftest import PASSWORDS, login
from tests.admin.test_routes import client_for, csrf_of

ROLES = (None, "viewer", "operator", "admin")
SECRET = "s3cret-never-shown"  # the client secret of tests/admin/conftest.make_config


def store(cfg, rec: dict) -> None:
    w = SpoolWriter(Spool.open(cfg.spool.path, appliance_id=cfg.appliance_id, max_bytes=int(cfg.spool.max_bytes)))
    try:
        w.put_state(preflight.KIND, preflight.NAME, rec).result(10)
    finally:
        w.close()


def doctor_checks() -> list[Check]:
    return [
        Check("dns workspace", True, "ws.example.test -> 10.0.0.5"),
        Check("tcp workspace", True, "ws.example.test:443 direct"),
        Check("oauth token", True, "issued for client edge-sp, expires in 3600 s"),
        Check("table exists", False, "table main.edge.readings: does not exist <b>here</b>",
              "create it with `edge table create` (or hand `edge table ddl` to a workspace admin)"),
        Check("zerobus write", False, f"UNAUTHENTICATED: bad secret {SECRET} for edge-sp",
              "PERMISSION_DENIED/UNAUTHENTICATED: grant the service principal MODIFY and SELECT"),
    ]


@pytest.fixture
def stored(cfg):
    now = time.time()
    rec = preflight.record(doctor_checks(), started_ts=now - 3.2, finished_ts=now, secrets=[cfg.zerobus.client_secret])
    store(cfg, rec)
    return rec


# ---------------------------------------------------------------- pure


def test_record_scrubs_secrets_and_counts():
    rec = preflight.record(doctor_checks(), started_ts=100.0, finished_ts=103.5, secrets=[SECRET, "", None])
    assert SECRET not in json.dumps(rec) and "bad secret *** for edge-sp" in rec["checks"][4]["detail"]
    assert (rec["ok"], rec["passed"], rec["total"], rec["duration_s"], rec["ts"]) == (False, 3, 5, 3.5, 103.5)
    assert preflight.summary(rec) == "3 of 5 checks passed; failed: table exists, zerobus write"
    ok = preflight.record([Check("a", True, "x"), {"name": "b", "ok": True, "detail": "y", "hint": ""}],
                          started_ts=1, finished_ts=2)
    assert ok["ok"] and preflight.summary(ok) == "all 2 checks passed"
    assert not preflight.record([], started_ts=1, finished_ts=2)["ok"]  # nothing checked is not a pass


def test_record_hides_a_secret_that_contains_a_shorter_one():
    rec = preflight.record([Check("x", False, "key abcdefgh and abcd")], started_ts=0, finished_ts=1,
                           secrets=["abcd", "abcdefgh"])
    assert rec["checks"][0]["detail"] == "key *** and ***"


def test_document_without_a_run_and_with_requests():
    reqs = [{"id": "2", "action": "run_preflight", "status": "pending"},
            {"id": "1", "action": "checkpoint_wal", "status": "done"}]
    doc = preflight.document({}, reqs, now=50.0)
    assert doc["last"] is None and doc["pending"] and [r["id"] for r in doc["requests"]] == ["2"]
    rec = preflight.record([Check("a", True, "x")], started_ts=10, finished_ts=20)
    doc = preflight.document({"last": rec}, [], now=50.0)
    assert doc["last"]["ok"] and doc["last"]["age_s"] == 30.0 and not doc["pending"]
    # A record someone tampered with to say ok while a check failed is not shown as a pass.
    doc = preflight.document({"last": {**rec, "checks": [{"name": "a", "ok": False}]}}, [], now=50.0)
    assert not doc["last"]["ok"]


# ---------------------------------------------------------------- routes


@pytest.mark.parametrize("role", ROLES)
def test_page_and_json_by_role_before_any_run(app, role):
    c = client_for(app, role)
    r = c.get("/preflight")
    if role is None:
        assert r.status_code == 302 and "/login" in r.headers["Location"]
        assert c.get("/api/preflight").status_code == 401
        return
    html = r.data.decode()
    assert r.status_code == 200 and 'id="preflight-never"' in html
    assert ("/actions/run_preflight" in html) == (role != "viewer")
    doc = c.get("/api/preflight").json
    assert doc["last"] is None and doc["pending"] is False and doc["error"] is None


@pytest.mark.parametrize("role", ROLES[1:])
def test_last_run_shown_with_pass_fail_detail_and_hint(app, stored, role):
    c = client_for(app, role)
    html = c.get("/preflight").data.decode()
    assert 'id="preflight-verdict">FAIL<' in html and "3 of 5 checks passed" in html
    assert html.count(">PASS<") == 3 and html.count(">FAIL<") == 3  # verdict + two failed checks
    assert "edge table create" in html and "&lt;b&gt;here&lt;/b&gt;" in html and "<b>here" not in html
    assert SECRET not in html and "bad secret ***" in html
    assert "<script" not in html and "style=" not in html
    doc = c.get("/api/preflight").json
    assert [x["name"] for x in doc["last"]["checks"]] == [x.name for x in doctor_checks()]
    assert doc["last"]["ok"] is False and doc["last"]["passed"] == 3 and 0 <= doc["last"]["age_s"] < 60
    assert SECRET not in json.dumps(doc)
    assert 'aria-current="page">Preflight<' in html


@pytest.mark.parametrize("role", ROLES)
def test_run_request_by_role_needs_csrf_and_is_not_queued_twice(app, cfg, role):
    c = client_for(app, role)
    r = c.post("/actions/run_preflight", data={})
    if role is None:
        assert r.status_code == 302 and "/login" in r.headers["Location"]
        return
    if role == "viewer":
        assert r.status_code == 403 and commands.pending(commands.directory(cfg)) == []
        return
    assert r.status_code == 400  # no CSRF token
    r = c.post("/actions/run_preflight", data={"csrf": csrf_of(c), "back": "/preflight"})
    assert r.status_code == 302 and r.headers["Location"] == "/preflight"
    d = commands.directory(cfg)
    assert [(p["action"], p["by"]) for p in commands.pending(d)] == [("run_preflight", role)]
    r = c.post("/actions/run_preflight", data={"csrf": csrf_of(c)})
    assert r.status_code == 409 and b"already requested" in r.data
    assert len(commands.pending(d)) == 1
    html = c.get("/preflight").data.decode()
    assert 'id="preflight-waiting"' in html and "/actions/run_preflight" not in html
    assert "pending</span> run preflight" in html
    assert c.get("/api/preflight").json["pending"] is True
    commands.complete(d, commands.pending(d)[0]["id"], ok=True, detail="all 10 checks passed")
    html = c.get("/preflight").data.decode()
    assert "done</span> run preflight" in html and "all 10 checks passed" in html
    assert "/actions/run_preflight" in html  # a new run can be requested again
    doc = c.get("/api/preflight").json
    assert doc["pending"] is False and doc["requests"][0]["detail"] == "all 10 checks passed"


def test_run_request_over_the_api_with_basic_auth(app, cfg):
    def basic(role):
        return {"Authorization": "Basic " + base64.b64encode(f"{role}:{PASSWORDS[role]}".encode()).decode()}

    c = app.test_client()
    assert c.post("/api/actions/run_preflight", headers=basic("viewer"), json={}).status_code == 403
    assert c.post("/api/actions/run_preflight", headers=basic("operator"), data="x").status_code == 415
    r = c.post("/api/actions/run_preflight", headers=basic("operator"), json={})
    assert r.status_code == 202 and r.json["action"] == "run_preflight" and r.json["status"] == "pending"
    r = c.post("/api/actions/run_preflight", headers=basic("admin"), json={})
    assert r.status_code == 409 and "already requested" in r.json["error"]
    assert c.get("/api/preflight", headers=basic("viewer")).json["pending"] is True


def test_page_without_a_spool_says_so(tmp_path):
    from edge.admin import create_app
    from tests.admin.conftest import ENV, make_config

    c = login(create_app(make_config(tmp_path / "fresh"), env=ENV).test_client(), "viewer")
    r = c.get("/preflight")
    assert r.status_code == 200 and b"Spool not readable" in r.data
    assert c.get("/api/preflight").json["error"].startswith("SpoolError")


def test_dashboard_links_the_last_run(app, cfg):
    c = client_for(app, "viewer")
    assert "not run yet" in c.get("/").data.decode().split('id="preflight-last"')[1][:200]
    now = time.time()
    store(cfg, preflight.record(doctor_checks(), started_ts=now - 1, finished_ts=now))
    cell = c.get("/").data.decode().split('id="preflight-last"')[1][:300]
    assert 'href="/preflight"' in cell and ">FAIL</span> 3 of 5" in cell
    assert c.get("/api/status").status_code == 200  # the status document ignores the preflight record
