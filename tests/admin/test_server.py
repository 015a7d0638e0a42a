"""The page's server: slow or half-open clients cannot starve it; an optional TLS listener with HSTS."""

from __future__ import annotations

import socket
import ssl
import time

import pytest

from edge.admin.server import serve
from edge.tlsgen import ensure_tls
from tests.admin.browser import login_cookie
from tests.admin.conftest import ENV, PASSWORDS
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
    assert argv[argv.index("--worker-class") + 1] == "gthread" and int(argv[argv.index("--threads") + 1]) >= 4
    plain = serve(str(write_config(tmp_path / "p" if (tmp_path / "p").mkdir() is None else tmp_path)), exec_=False)
    assert "--certfile" not in plain
