"""The page's server: slow or half-open clients cannot starve it; an optional TLS listener with HSTS."""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import signal
import socket
import ssl
import threading
import time
import urllib.parse

import pytest

from edge.admin.probe import ready
from edge.admin.server import serve
from edge.admin.worker import READ_DEADLINE_S
from edge.tlsgen import ensure_tls
from simulators.kit.wait import wait_until
from tests.admin.browser import login_cookie
from edge.spool import Spool
from edge.writer import SpoolWriter
from tests.admin.conftest import ENV, PASSWORDS, forwarder_state
from tests.admin.live import Gunicorn, get
from tests.admin.test_live import write_config


def test_two_half_open_connections_do_not_stop_a_third_clients_page(tmp_path):
    """Before: two sync workers, each stuck reading a silent connection, left the third client waiting ~30 s."""
    gun = Gunicorn(write_config(tmp_path), ENV, workers=2, log=tmp_path / "gunicorn.log")
    held = []
    try:
        for partial in (b"", b"GET /login HTTP/1.1\r\nHost: x\r\n"):  # silent, then stalled mid-headers
            s = socket.create_connection(("127.0.0.1", gun.port), timeout=5)
            s.sendall(partial)
            held.append(s)
        for _ in range(2):  # both connections are accepted and held by now
            held.append(socket.create_connection(("127.0.0.1", gun.port), timeout=5))
        t0 = time.monotonic()
        status, body = get(gun.port, "/login", timeout=5)
        assert status == 200 and b"Sign in" in body
        assert time.monotonic() - t0 < 5
    finally:
        for s in held:
            s.close()
        gun.stop()


def _get_from(source: str, port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=READ_DEADLINE_S + 10, source_address=(source, 0))
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def test_clients_trickling_their_requests_are_cut_and_the_page_answers(tmp_path):
    """Before: a thread read a request head (or body) with no time limit, so 16 connections sending a byte a
    second (8 threads x 2 workers) held every thread for good and the page timed out for everyone else. Now one
    address holds a bounded share of the threads, each for at most READ_DEADLINE_S, and a cut body is never
    handed to the app."""
    gun = Gunicorn(write_config(tmp_path), ENV, workers=2, log=tmp_path / "gunicorn.log")
    slow = []
    stop = threading.Event()

    def trickle() -> None:
        while not stop.is_set():
            for s in slow:
                try:
                    s.sendall(b"X")
                except OSError:
                    pass
            stop.wait(1.0)

    feeder = threading.Thread(target=trickle, daemon=True)
    try:
        for i in range(40):  # more than every thread of both workers; a quarter trickle a body instead
            s = socket.create_connection(("127.0.0.1", gun.port), timeout=5)
            s.sendall(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                      b"Content-Length: 4000\r\n\r\nuser=admin&password=" if i % 4 == 0
                      else b"GET /login HTTP/1.1\r\nX-Slow: ")
            slow.append(s)
        feeder.start()
        for _ in range(3):  # another client (another address) is served at once, again and again
            t0 = time.monotonic()
            status, body = _get_from("127.0.0.2", gun.port, "/login")
            assert status == 200 and b"Sign in" in body
            assert time.monotonic() - t0 < 3

        def closed_by_server(s: socket.socket) -> bool:
            try:
                s.settimeout(0.05)
                return s.recv(1) == b""
            except (socket.timeout, BlockingIOError):
                return False
            except OSError:
                return True
        wait_until(lambda: all(closed_by_server(s) for s in slow), READ_DEADLINE_S + 10,
                   "the trickling connections to be closed")
        log = gun.log_tail(200_000)
        assert "no complete request within" in log
        assert '"POST /login"' not in log  # no cut body reached the app (it would have answered 400 or 401)
    finally:
        stop.set()
        for s in slow:
            s.close()
        gun.stop()


@pytest.fixture
def tls_files(tmp_path):
    return ensure_tls(str(tmp_path / "tls"), ["127.0.0.1", "localhost"])


def test_tls_listener_serves_the_page_with_hsts_and_secure_cookies(tmp_path, tls_files):
    cfg = write_config(tmp_path, tls_cert=tls_files.server_cert, tls_key=tls_files.server_key)
    ctx = ssl.create_default_context(cafile=tls_files.ca_cert)  # verification stays on
    gun = Gunicorn(cfg, ENV, workers=1, log=tmp_path / "gunicorn.log", tls=ctx,
                   certfile=tls_files.server_cert, keyfile=tls_files.server_key)
    try:
        headers: dict = {}
        status, body = get(gun.port, "/login", tls=ctx, response_headers=headers)
        assert status == 200 and b"Sign in" in body
        assert headers["strict-transport-security"].startswith("max-age=")
        assert "Secure" in headers["set-cookie"]
        cookie = login_cookie("127.0.0.1", gun.port, "viewer", PASSWORDS["viewer"], tls=ctx)
        assert get(gun.port, "/api/whoami", headers={"Cookie": cookie}, tls=ctx)[0] == 200
        with pytest.raises((ConnectionError, OSError)):
            # Plain HTTP to the TLS listener gets no page.
            status, _ = get(gun.port, "/login", timeout=5)
            assert status != 200
            raise ConnectionError("answered, but not with the page")
    finally:
        gun.stop()


def test_serve_passes_the_certificate_and_uses_threaded_workers(tmp_path, tls_files, monkeypatch):
    monkeypatch.setenv("EDGE_ADMIN_PASSWORD", PASSWORDS["admin"])
    argv = serve(str(write_config(tmp_path, tls_cert=tls_files.server_cert, tls_key=tls_files.server_key)),
                 exec_=False)
    assert argv[argv.index("--certfile") + 1] == tls_files.server_cert
    assert argv[argv.index("--keyfile") + 1] == tls_files.server_key
    assert argv[argv.index("--worker-class") + 1] == "edge.admin.worker.Worker"
    assert int(argv[argv.index("--threads") + 1]) >= 4
    plain = serve(str(write_config(tmp_path / "p" if (tmp_path / "p").mkdir() is None else tmp_path)), exec_=False)
    assert "--certfile" not in plain


def _workers(master: int) -> set[int]:
    with open(f"/proc/{master}/task/{master}/children") as f:
        return {int(p) for p in f.read().split()}


def _basic(role: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{role}:{password}".encode()).decode()}


def test_logins_under_real_workers_limit_survives_worker_restarts_and_sessions_die_at_logout(tmp_path):
    """Two gunicorn workers; guesses spread over both; both workers killed -9 and respawned by the master.
    Before: each worker counted on its own, a respawned worker forgot, a viewer's success cleared the admin
    guesses, and a copied cookie outlived logout. Audit lines reach the log, without any password."""
    gun = Gunicorn(write_config(tmp_path), ENV, workers=2, log=tmp_path / "gunicorn.log")
    try:
        viewer_cookie = login_cookie("127.0.0.1", gun.port, "viewer", PASSWORDS["viewer"])
        for i in range(4):  # fresh connections: gunicorn spreads them over its workers
            assert get(gun.port, "/api/whoami", headers=_basic("admin", f"wrong-guess-{i}"))[0] == 401
        assert get(gun.port, "/api/whoami", headers=_basic("viewer", PASSWORDS["viewer"]))[0] == 200
        before = _workers(gun.proc.pid)
        assert len(before) == 2
        for pid in before:
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: len(_workers(gun.proc.pid) - before) == 2 and get(gun.port, "/healthz")[0] == 200,
                   30, "two new workers")
        assert get(gun.port, "/api/whoami", headers=_basic("admin", "wrong-guess-4"))[0] == 401  # the 5th
        status, _ = get(gun.port, "/api/whoami", headers=_basic("admin", PASSWORDS["admin"]))
        assert status == 429  # the right password, but the limit holds across workers and their restart
        # The session opened before the restart is still valid (server-side), on any worker...
        for _ in range(4):
            status, body = get(gun.port, "/api/whoami", headers={"Cookie": viewer_cookie})
            assert status == 200 and json.loads(body)["role"] == "viewer"
        # ...until its owner logs out: then a copy of the cookie is refused by every worker.
        _, page = get(gun.port, "/", headers={"Cookie": viewer_cookie})
        csrf = re.search(rb'name="csrf" value="([^"]+)"', page).group(1).decode()
        conn = http.client.HTTPConnection("127.0.0.1", gun.port, timeout=10)
        conn.request("POST", "/logout", body=urllib.parse.urlencode({"csrf": csrf}),
                     headers={"Cookie": viewer_cookie, "Content-Type": "application/x-www-form-urlencoded"})
        assert conn.getresponse().status == 302
        conn.close()
        for _ in range(4):
            assert get(gun.port, "/api/whoami", headers={"Cookie": viewer_cookie})[0] == 401
        log = wait_until(lambda: (t := gun.log_tail(200_000)) and "login refused: role=admin" in t and t,
                         10, "the audit lines in gunicorn's log")
        assert "login ok: role=viewer client=127.0.0.1 via=form" in log
        assert log.count("login failed: role=admin client=127.0.0.1 via=basic") == 5
        assert "locked out for" in log
        for pw in (*PASSWORDS.values(), "wrong-guess-"):
            assert pw not in log
    finally:
        gun.stop()


def _ready_spool(tmp_path) -> None:
    """A spool with a fresh forwarder state: the page's /readyz answers 200."""
    w = SpoolWriter(Spool.open(str(tmp_path / "spool.db"), appliance_id="load-1", max_bytes=64 * 1024**2))
    w.put_state("forwarder", "main", forwarder_state(state="idle", updated_ts=time.time(), egress_cuts=[])).result(10)
    w.close()


def test_the_containers_probe_verifies_the_tls_listener_against_its_own_certificate(tmp_path, tls_files):
    """The healthcheck speaks HTTPS with verification on: pinned to the page's certificate (a CA-issued leaf
    here, accepted as the anchor), checked for a name it carries; a listener with another key fails it."""
    _ready_spool(tmp_path)
    cfg = write_config(tmp_path, tls_cert=tls_files.server_cert, tls_key=tls_files.server_key)
    ctx = ssl.create_default_context(cafile=tls_files.ca_cert)
    gun = Gunicorn(cfg, ENV, workers=1, log=tmp_path / "gunicorn.log", tls=ctx,
                   certfile=tls_files.server_cert, keyfile=tls_files.server_key)
    try:
        assert ready(gun.port, tls_files.server_cert) == (True, "/readyz answered 200")
        other = ensure_tls(str(tmp_path / "other"), ["127.0.0.1", "localhost"])
        ok, why = ready(gun.port, other.server_cert)  # not the certificate this listener holds
        assert not ok and "CERTIFICATE_VERIFY_FAILED" in why
        ok, why = ready(gun.port, None)  # plain HTTP to a TLS listener
        assert not ok
    finally:
        gun.stop()
    ok, why = ready(gun.port, tls_files.server_cert)  # nothing listening
    assert not ok and "Connection" in why


def test_the_containers_probe_speaks_plain_http_without_a_certificate(tmp_path):
    gun = Gunicorn(write_config(tmp_path), ENV, workers=1, log=tmp_path / "gunicorn.log")
    try:
        assert ready(gun.port, None) == (False, "/readyz answered 503")  # the page's verdict: no spool yet
        _ready_spool(tmp_path)
        assert ready(gun.port, None) == (True, "/readyz answered 200")
    finally:
        gun.stop()
