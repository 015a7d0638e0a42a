"""Sessions and logins: server-side sessions, one role per guess, a shared limiter, audit lines."""

from __future__ import annotations

import base64
import hashlib
import logging

from edge.admin import create_app
from tests.admin.conftest import ENV, PASSWORDS, login
from tests.admin.test_routes import csrf_of


def _cookie(client) -> str:
    c = client.get_cookie("edge_admin")
    return c.value if c is not None else ""


def _post_login(client, user: str, password: str, addr: str = "127.0.0.1"):
    client.get("/login", environ_base={"REMOTE_ADDR": addr})
    return client.post("/login", data={"user": user, "password": password, "csrf": csrf_of(client)},
                       environ_base={"REMOTE_ADDR": addr})


def test_a_copied_cookie_stops_working_after_logout(app):
    c = login(app.test_client(), "operator")
    stolen = _cookie(c)
    thief = app.test_client()
    thief.set_cookie("edge_admin", stolen)
    assert thief.get("/").status_code == 200
    assert c.post("/logout", data={"csrf": csrf_of(c)}).status_code == 302
    r = thief.get("/")
    assert r.status_code == 302 and "/login" in r.headers["Location"]
    assert thief.get("/api/whoami").status_code == 401


def test_the_cookie_carries_nothing_derived_from_a_password(app):
    c = login(app.test_client(), "admin")
    value = _cookie(c)
    assert 30 <= len(value) <= 64 and "." not in value  # a random id, not a signed payload
    pw = PASSWORDS["admin"].encode()
    for derived in (hashlib.sha256(b"edge-admin-session\0" + pw).hexdigest()[:16], hashlib.sha256(pw).hexdigest()[:16]):
        assert derived not in value
    padded = value + "=" * (-len(value) % 4)
    assert b"role" not in base64.urlsafe_b64decode(padded)


def test_a_password_change_ends_the_roles_sessions(cfg):
    old = create_app(cfg, env=ENV)
    c = login(old.test_client(), "viewer")
    admin_c = login(old.test_client(), "admin")
    new_env = {**ENV, "EDGE_VIEWER_PASSWORD": "viewer-pass-456"}
    new = create_app(cfg, env=new_env)  # the same state dir, as after a restart with the new secret
    moved = new.test_client()
    moved.set_cookie("edge_admin", _cookie(c))
    assert moved.get("/").status_code == 302
    kept = new.test_client()
    kept.set_cookie("edge_admin", _cookie(admin_c))
    assert kept.get("/").status_code == 200  # the admin's password did not change


def test_a_guess_is_checked_against_the_role_the_form_names(app):
    """Before: any role's password signed in (as that role) whatever was asked; each guess tried three roles."""
    c = app.test_client()
    assert _post_login(c, "admin", PASSWORDS["viewer"]).status_code == 401
    assert c.get("/api/whoami").status_code == 401
    assert _post_login(c, "viewer", PASSWORDS["viewer"]).status_code == 302
    assert c.get("/api/whoami").json["role"] == "viewer"
    assert _post_login(app.test_client(), "root", PASSWORDS["admin"]).status_code == 400


def test_another_roles_success_does_not_reset_the_admin_count(app):
    c = app.test_client()
    for _ in range(4):
        assert _post_login(c, "admin", "wrong-guess-1", "10.1.1.1").status_code == 401
    assert _post_login(app.test_client(), "viewer", PASSWORDS["viewer"], "10.1.1.1").status_code == 302
    assert _post_login(c, "admin", "wrong-guess-2", "10.1.1.1").status_code == 401
    assert _post_login(c, "admin", PASSWORDS["admin"], "10.1.1.1").status_code == 429


def test_limits_hold_across_workers(cfg):
    """Two apps on one state dir stand for two gunicorn workers (tests/admin/test_live.py runs real ones)."""
    w1, w2 = create_app(cfg, env=ENV), create_app(cfg, env=ENV)
    for i in range(5):
        assert _post_login((w1, w2)[i % 2].test_client(), "admin", "wrong-guess", "10.2.2.2").status_code == 401
    assert _post_login(w2.test_client(), "admin", PASSWORDS["admin"], "10.2.2.2").status_code == 429
    assert _post_login(w1.test_client(), "admin", PASSWORDS["admin"], "10.2.2.2").status_code == 429


def test_login_audit_lines_never_hold_the_password(app, caplog):
    caplog.set_level(logging.INFO, logger="edge.admin.audit")
    _post_login(app.test_client(), "operator", PASSWORDS["operator"], "10.3.3.3")
    for _ in range(5):
        _post_login(app.test_client(), "admin", "guess-" + PASSWORDS["viewer"], "10.3.3.4")
    _post_login(app.test_client(), "admin", PASSWORDS["admin"], "10.3.3.4")
    basic = "Basic " + base64.b64encode(b"viewer:not-the-one").decode()
    app.test_client().get("/api/status", headers={"Authorization": basic}, environ_base={"REMOTE_ADDR": "10.3.3.5"})
    lines = [r.getMessage() for r in caplog.records if r.name == "edge.admin.audit"]
    assert any("login ok: role=operator client=10.3.3.3 via=form" in x for x in lines)
    assert sum("login failed: role=admin client=10.3.3.4" in x for x in lines) == 5
    assert any("locked out" in x for x in lines if "failed" in x)
    assert any("login refused: role=admin client=10.3.3.4" in x for x in lines)
    assert any("login failed: role=viewer client=10.3.3.5 via=basic" in x for x in lines)
    text = "\n".join(lines)
    for pw in (*PASSWORDS.values(), "not-the-one"):
        assert pw not in text


def test_anonymous_visits_cost_bounded_rows(app, monkeypatch):
    monkeypatch.setattr("edge.admin.store.MAX_ANON_SESSIONS", 50)
    for _ in range(120):
        app.test_client().get("/login")
    store = app.session_interface.store
    assert store.count_sessions() <= 50
