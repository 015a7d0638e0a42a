"""Every route for every role through Flask's test client, against a real spool."""

from __future__ import annotations

import base64
import json
import re
import time

import pytest

from edge.admin import create_app
from edge.admin.settings import AdminConfigError
from edge.control import commands
from edge.spool import Spool
from edge.writer import SpoolWriter

from tests.admin.conftest import ENV, PASSWORDS, TOKEN, forwarder_state, login, make_config, source_state

ROLES = (None, "viewer", "operator", "admin")
PAGES = ["/", "/dead-letters", "/quarantine"]
APIS = ["/api/status", "/api/sources", "/api/samples", "/api/dead-letters", "/api/quarantine", "/api/commands",
        "/api/whoami"]
ACTIONS = {"pause_forwarding": "operator", "resume_forwarding": "operator", "checkpoint_wal": "operator",
           "retry_dead_letter": "admin"}
RANK = {None: -1, "viewer": 0, "operator": 1, "admin": 2}
SECRETS = [*PASSWORDS.values(), "s3cret-never-shown", TOKEN]


def client_for(app, role):
    c = app.test_client()
    return login(c, role) if role else c


def csrf_of(client) -> str:
    with client.session_transaction() as s:
        return s.get("csrf") or ""


def assert_no_secret(body: bytes):
    text = body.decode("utf-8", "replace")
    for s in SECRETS:
        assert s not in text


@pytest.mark.parametrize("role", ROLES)
def test_pages_and_json_twins_by_role(app, role):
    c = client_for(app, role)
    for path in PAGES:
        r = c.get(path)
        if role is None:
            assert r.status_code == 302 and "/login" in r.headers["Location"], path
        else:
            assert r.status_code == 200, path
            assert_no_secret(r.data)
    for path in APIS:
        r = c.get(path)
        assert r.status_code == (401 if role is None else 200), path
        if role:
            assert r.is_json
            assert_no_secret(r.data)


def test_dashboard_shows_the_spool_and_the_states(as_role):
    r = as_role("viewer").get("/")
    html = r.data.decode()
    assert re.search(r'id="depth-rows">60<', html)  # 60 rows after ack(40): 59 readings and the dead letter's loss marker
    assert 'id="uplink-state">egress down<' in html
    assert "connection refused" in html and "main.edge.readings" in html
    assert 'id="source-modbus1"' in html and "plc-3" in html and "degraded" in html
    assert 'id="dead-letters">1<' in html and 'id="quarantined">1<' in html
    assert html.count('<svg class="chart"') == 2 and html.count('<svg class="chart narrow"') == 2
    assert '<meta http-equiv="refresh" content="5">' in html
    assert "<script" not in html and "style=" not in html  # the CSP allows neither inline
    # Viewers see no action buttons.
    assert "/actions/pause_forwarding" not in html


def test_api_status_numbers_match_the_spool(as_role):
    s = as_role("viewer").get("/api/status").json
    assert s["backlog"]["depth_rows"] == 60 and s["backlog"]["delivered_seq"] == 40
    assert s["backlog"]["next_seq"] == 101 and s["losses"]["dead_letters"] == 1
    assert s["uplink"]["state"] == "egress_down" and s["uplink"]["last_ack_seq"] == 40
    assert {x["name"] for x in s["sources"]} == {"mqtt1", "modbus1"}
    assert [d["peak_depth"] for d in s["drills"]][1] == 1200
    assert s["health"]["spool_readable"] and s["health"]["wal_bytes"] is not None


def test_dead_letters_are_decoded_and_escaped(as_role):
    html = as_role("admin").get("/dead-letters").data.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert" not in html
    assert "p/9" in html  # seq 50 decoded: point p/9
    assert "/actions/retry_dead_letter" in html
    api = as_role("viewer").get("/api/dead-letters").json
    assert api["items"][0]["seq"] == 50 and api["items"][0]["decoded"]["fields"]["point"] == "p/9"


def test_quarantined_payload_is_escaped_and_bounded(as_role):
    html = as_role("viewer").get("/quarantine").data.decode()
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "<b>bold" not in html
    assert "\\x00\\x01" in html and "plant/x" in html
    item = as_role("viewer").get("/api/quarantine").json["items"][0]
    assert item["raw"]["size"] == 5014 and item["raw"]["truncated"]  # shown up to 4 KiB


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_actions_by_role_need_csrf(app, role, action, cfg):
    c = client_for(app, role)
    data = {"id": "1"} if action == "retry_dead_letter" else {}
    r = c.post(f"/actions/{action}", data=data)  # no CSRF token
    if role is None:
        assert r.status_code == 302 and "/login" in r.headers["Location"]
        return
    if RANK[role] < RANK[ACTIONS[action]]:
        assert r.status_code == 403
        return
    assert r.status_code == 400  # CSRF missing
    r = c.post(f"/actions/{action}", data={**data, "csrf": csrf_of(c)})
    assert r.status_code == 302
    pending = commands.pending(cfg.data_dir + "/admin-commands")
    assert [(p["action"], p["by"]) for p in pending] == [(action, role)]
    if action == "retry_dead_letter":
        assert pending[0]["args"] == {"id": 1}


def test_api_actions_with_basic_auth_must_be_json(app, cfg):
    auth = {"Authorization": "Basic " + base64.b64encode(f"operator:{PASSWORDS['operator']}".encode()).decode()}
    c = app.test_client()
    assert c.post("/api/actions/pause_forwarding", headers=auth, data="x").status_code == 415
    r = c.post("/api/actions/pause_forwarding", headers=auth, json={})
    assert r.status_code == 202 and r.json["action"] == "pause_forwarding"
    assert c.post("/api/actions/retry_dead_letter", headers=auth, json={"id": 1}).status_code == 403
    bad = {"Authorization": "Basic " + base64.b64encode(b"operator:wrong-password").decode()}
    assert c.get("/api/status", headers=bad).status_code == 401
    assert c.get("/api/status", headers=auth).json["uplink"]["pause_requested"] is True


def test_login_is_rate_limited_per_client(app):
    c = app.test_client()
    c.get("/login")
    for _ in range(5):
        r = c.post("/login", data={"user": "admin", "password": "nope-nope", "csrf": csrf_of(c)})
        assert r.status_code == 401
    r = c.post("/login", data={"user": "admin", "password": PASSWORDS["admin"], "csrf": csrf_of(c)})
    assert r.status_code == 429 and b"Too many failed attempts" in r.data
    other = app.test_client()  # another address is not locked out
    other.get("/login", environ_base={"REMOTE_ADDR": "10.9.9.9"})
    tok = csrf_of(other)
    r = other.post("/login", data={"user": "admin", "password": PASSWORDS["admin"], "csrf": tok}, environ_base={"REMOTE_ADDR": "10.9.9.9"})
    assert r.status_code == 302


def test_login_needs_its_csrf_token_and_refuses_open_redirects(app):
    c = app.test_client()
    c.get("/login")
    assert c.post("/login", data={"user": "admin", "password": PASSWORDS["admin"]}).status_code == 400
    for target in ("//evil.example/x", "/\\evil.example/x", "https://evil.example/"):
        c.get("/login")
        r = c.post("/login", data={"user": "admin", "password": PASSWORDS["admin"], "csrf": csrf_of(c), "next": target})
        assert r.status_code == 302 and r.headers["Location"] == "/", target
    r = c.post("/login", data={"user": "admin", "password": PASSWORDS["admin"], "csrf": csrf_of(c), "next": "/quarantine"})
    assert r.headers["Location"] == "/quarantine"


def test_session_cookie_flags_and_security_headers(cfg):
    app = create_app(make_config_secure(cfg), env=ENV)
    c = app.test_client()
    r = c.get("/login")
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" in cookie
    for k in ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy"):
        assert k in r.headers
    assert "script-src 'self'" in r.headers["Content-Security-Policy"] and r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["Cache-Control"] == "no-store"


def test_login_over_plain_http_with_secure_cookies_explains_itself(cfg):
    c = create_app(make_config_secure(cfg), env=ENV).test_client()
    r = c.post("/login", data={"user": "admin", "password": PASSWORDS["admin"], "csrf": "x"})
    assert r.status_code == 400 and b"secure_cookies: false" in r.data


def make_config_secure(cfg):
    cfg.admin.secure_cookies = True
    return cfg


def test_logout_ends_the_session_and_a_password_change_too(app, cfg):
    c = client_for(app, "operator")
    assert c.post("/logout", data={"csrf": csrf_of(c)}).status_code == 302
    assert c.get("/").status_code == 302
    c = client_for(app, "operator")
    changed = create_app(cfg, env={**ENV, "EDGE_OPERATOR_PASSWORD": "a-new-password-1"})
    cookie = c.get_cookie("edge_admin").value
    c2 = changed.test_client()
    c2.set_cookie("edge_admin", cookie)
    assert c2.get("/").status_code == 302


def test_session_lifetime_is_absolute_even_with_auto_refresh(app):
    c = client_for(app, "viewer")
    assert c.get("/").status_code == 200
    with c.session_transaction() as s:
        s.created = time.time() - 9 * 3600  # signed in 9 h ago; the default lifetime is 8 h
        s.modified = True
    r = c.get("/")
    assert r.status_code == 302 and "/login" in r.headers["Location"]


def test_probes_open_by_default(app):
    c = app.test_client()
    assert c.get("/healthz").json["status"] == "ok"
    r = c.get("/readyz")
    assert r.status_code == 200 and r.json["ready"]
    m = c.get("/metrics")
    assert m.status_code == 200 and m.mimetype == "text/plain" and b"zerobus_edge_spool_depth_readings 60" in m.data
    assert_no_secret(m.data)


def test_probes_behind_a_token(spool_dir):
    cfg = make_config(spool_dir, probes="token", metrics_token=TOKEN)
    c = create_app(cfg, env=ENV).test_client()
    for path in ("/metrics", "/healthz", "/readyz"):
        assert c.get(path).status_code == 401
        assert c.get(path, headers={"Authorization": "Bearer wrong-token-1"}).status_code == 401
        assert c.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_readyz_fails_without_a_spool_or_with_a_stale_forwarder(tmp_path, spool_dir):
    c = create_app(make_config(tmp_path / "empty"), env=ENV).test_client()
    r = c.get("/readyz")
    assert r.status_code == 503 and "spool not readable" in r.json["problems"][0]
    assert c.get("/healthz").status_code == 200  # liveness does not depend on the spool
    stale = make_config(spool_dir, forwarder_stale_after="1s")
    w = SpoolWriter(Spool.open(stale.spool.path, appliance_id="plant-7-edge", max_bytes=64 * 1024**2))
    w.put_state("forwarder", "main", forwarder_state(state="streaming", updated_ts=time.time() - 30,
                                                     egress_cuts=[])).result(10)
    w.close()
    r = create_app(stale, env=ENV).test_client().get("/readyz")
    assert r.status_code == 503 and "forwarder state is" in r.json["problems"][0]


def test_refuses_to_build_without_a_password(cfg):
    with pytest.raises(AdminConfigError):
        create_app(cfg, env={})


def test_unknown_routes_and_actions(as_role):
    c = as_role("admin")
    assert c.get("/nope").status_code == 404
    assert c.post("/actions/drop_everything", data={"csrf": csrf_of(c)}).status_code == 404
    r = c.post("/actions/retry_dead_letter", data={"csrf": csrf_of(c), "id": "x"})
    assert r.status_code == 400


def test_create_app_from_edge_config_env(tmp_path, spool_dir):
    import yaml
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump({"appliance_id": "from-env", "data_dir": str(spool_dir),
                                    "spool": {"path": str(spool_dir / "spool.db")},
                                    "admin": {"password": "${EDGE_ADMIN_PASSWORD}", "secure_cookies": False}}))
    app = create_app(env={**ENV, "EDGE_CONFIG": str(path)})
    s = login(app.test_client(), "admin").get("/api/status").json
    assert s["appliance_id"] == "from-env" and json.dumps(s).count(PASSWORDS["admin"]) == 0


def test_requests_show_on_the_page_and_their_outcome(app, cfg):
    c = client_for(app, "operator")
    c.post("/actions/pause_forwarding", data={"csrf": csrf_of(c)})
    html = c.get("/").data.decode()
    assert "pending</span> pause forwarding" in html and "Operator request</th><td>pause" in html
    d = cfg.data_dir + "/admin-commands"
    commands.complete(d, commands.pending(d)[0]["id"], ok=False, detail="forwarder has no pause support yet")
    html = c.get("/").data.decode()
    assert "refused</span> pause forwarding" in html and "no pause support yet" in html


def test_source_rate_from_two_observations(app, cfg):
    c = client_for(app, "viewer")
    w = SpoolWriter(Spool.open(cfg.spool.path, appliance_id="plant-7-edge", max_bytes=64 * 1024**2))
    try:
        w.put_state("source", "mqtt1", source_state("mqtt1", readings_total=1000)).result(10)
        assert c.get("/api/sources").json["sources"][1]["rate"] is None
        time.sleep(0.3)
        w.put_state("source", "mqtt1", source_state("mqtt1", readings_total=1300)).result(10)
        rate = [s for s in c.get("/api/sources").json["sources"] if s["name"] == "mqtt1"][0]["rate"]
        assert 300 < rate < 1300  # 300 readings over ~0.3 s
    finally:
        w.close()


def test_page_without_a_spool_says_so_instead_of_failing(tmp_path):
    app = create_app(make_config(tmp_path / "fresh"), env=ENV)
    c = login(app.test_client(), "viewer")
    r = c.get("/")
    assert r.status_code == 200
    html = r.data.decode()
    assert 'id="headline">Spool unreadable<' in html and "no spool at" in html
    assert c.get("/api/dead-letters").json["error"].startswith("SpoolError")
    m = c.get("/metrics").data.decode()
    assert "zerobus_edge_spool_readable 0" in m
