"""Headless Chromium against a running admin page, signed in through the real login form.

Chromium's command line cannot post a form or set a cookie, so a tiny local
proxy adds the session cookie (obtained by posting the real login form) to
every request it forwards; everything else is byte-for-byte what gunicorn sent.
"""

from __future__ import annotations

import html as htmllib
import http.client
import http.cookies
import re
import subprocess
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"


def login_cookie(host: str, port: int, role: str, password: str, timeout: float = 10.0, tls=None) -> str:
    """Sign in through GET /login + POST /login; returns the ``edge_admin=...`` cookie pair."""
    conn = (http.client.HTTPSConnection(host, port, timeout=timeout, context=tls) if tls is not None
            else http.client.HTTPConnection(host, port, timeout=timeout))
    try:
        conn.request("GET", "/login")
        r = conn.getresponse()
        page = r.read().decode()
        cookie = http.cookies.SimpleCookie(r.getheader("Set-Cookie"))
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        body = urllib.parse.urlencode({"user": role, "password": password, "csrf": csrf, "next": "/"})
        conn.request("POST", "/login", body=body, headers={
            "Content-Type": "application/x-www-form-urlencoded", "Cookie": f"edge_admin={cookie['edge_admin'].value}"})
        r = conn.getresponse()
        r.read()
        if r.status != 302:
            raise RuntimeError(f"login failed: HTTP {r.status}")
        return "edge_admin=" + http.cookies.SimpleCookie(r.getheader("Set-Cookie"))["edge_admin"].value
    finally:
        conn.close()


class CookieProxy:
    def __init__(self, upstream: tuple[str, int], cookie: str):
        up_host, up_port = upstream

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                conn = http.client.HTTPConnection(up_host, up_port, timeout=10)
                try:
                    conn.request("GET", self.path, headers={"Cookie": cookie, "Accept": self.headers.get("Accept", "*/*")})
                    r = conn.getresponse()
                    data = r.read()
                    self.send_response(r.status)
                    for k, v in r.getheaders():
                        if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    conn.close()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self._t = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._t.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def chromium(url: str, *, screenshot: Path | None = None, size: str = "1366,1500", timeout: float = 60.0,
             profile: Path) -> str:
    """Load ``url``; returns the DOM (``--dump-dom``) or writes a PNG when ``screenshot`` is given."""
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--no-default-browser-check", "--disable-extensions",
            f"--user-data-dir={profile}", f"--window-size={size}", "--hide-scrollbars",
            "--virtual-time-budget=3000", "--proxy-server=direct://", "--proxy-bypass-list=*"]
    args += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    args.append(url)
    p = subprocess.run(args, capture_output=True, timeout=timeout, text=True)
    if screenshot is not None:
        if not screenshot.exists():
            raise RuntimeError(f"chromium wrote no screenshot (rc={p.returncode}): {p.stderr[-800:]}")
        return ""
    if p.returncode != 0 or not p.stdout.strip():
        raise RuntimeError(f"chromium failed (rc={p.returncode}): {p.stderr[-800:]}")
    return p.stdout


def text_of(dom: str, element_id: str) -> str:
    """The text of the element with that id in a dumped DOM (tags removed, entities decoded)."""
    m = re.search(rf'id="{element_id}"[^>]*>(.*?)</', dom, re.S)
    assert m, f"no #{element_id} in the page"
    return htmllib.unescape(re.sub(r"<[^>]+>", "", m.group(1))).strip()
