"""The Compose appliance's opt-in HTTPS for the admin page: ADMIN_TLS_CERT / ADMIN_TLS_KEY reach the admin
section of the shipped ops/compose/edge.yaml, empty means plain HTTP, set means gunicorn serves TLS.

Read with the real loader and the real launcher (``serve(exec_=False)`` returns the gunicorn command line
instead of running it); docker-compose.yml and .env.example are read as files (no Docker).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from edge.admin.server import serve
from edge.config import load
from edge.configtypes import ConfigError

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "ops" / "compose" / "edge.yaml"
CERT, KEY = "/etc/edge/admin-tls/cert.pem", "/etc/edge/admin-tls/key.pem"
# The whole config needs the edge's MQTT password; the admin section alone needs none of it.
BASE = {"MQTT_PASSWORD_EDGE": "m" * 12}


def _launch(monkeypatch, tls: dict[str, str]) -> list[str]:
    """The gunicorn command line the admin container's ``edge admin`` would exec with these variables."""
    for var in ("ADMIN_TLS_CERT", "ADMIN_TLS_KEY", "EDGE_ADMIN_PASSWORD_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("EDGE_ADMIN_PASSWORD", "admin-password-1")
    for var, value in tls.items():
        monkeypatch.setenv(var, value)
    return serve(str(CONFIG), exec_=False)


@pytest.mark.parametrize("tls", [{}, {"ADMIN_TLS_CERT": "", "ADMIN_TLS_KEY": ""}], ids=["unset", "empty"])
def test_empty_or_unset_variables_mean_plain_http(monkeypatch, tls):
    cfg = load(CONFIG, {**BASE, **tls})  # the whole file, as the edge service loads it
    assert not cfg.admin.tls_cert and not cfg.admin.tls_key
    argv = _launch(monkeypatch, tls)
    assert "--certfile" not in argv and "--keyfile" not in argv


def test_set_variables_serve_the_page_over_tls(monkeypatch):
    tls = {"ADMIN_TLS_CERT": CERT, "ADMIN_TLS_KEY": KEY}
    cfg = load(CONFIG, {**BASE, **tls})
    assert (cfg.admin.tls_cert, cfg.admin.tls_key) == (CERT, KEY)
    argv = _launch(monkeypatch, tls)
    assert argv[argv.index("--certfile") + 1] == CERT and argv[argv.index("--keyfile") + 1] == KEY


@pytest.mark.parametrize("given", ["ADMIN_TLS_CERT", "ADMIN_TLS_KEY"])
def test_one_without_the_other_is_a_clear_error(given):
    with pytest.raises(ConfigError, match="tls_cert and tls_key go together"):
        load(CONFIG, {**BASE, given: CERT if given.endswith("CERT") else KEY}, section="admin")


def test_compose_passes_the_variables_to_the_admin_service_only():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name, service in services.items():
        env = service.get("environment") or {}
        want = {"ADMIN_TLS_CERT": "${ADMIN_TLS_CERT:-}", "ADMIN_TLS_KEY": "${ADMIN_TLS_KEY:-}"}
        assert {k: v for k, v in env.items() if k.startswith("ADMIN_TLS")} == (want if name == "admin" else {}), name
    # The example paths in .env.example lie in the directory the admin service mounts for them.
    example = dict(re.findall(r"^#?\s*(ADMIN_TLS_[A-Z]+)=(.*)$", (ROOT / ".env.example").read_text(), re.M))
    mount = next(v for v in services["admin"]["volumes"] if v.startswith("${ADMIN_TLS_DIR:-"))
    target = mount.split("}:", 1)[1].rsplit(":", 1)[0]
    for var in ("ADMIN_TLS_CERT", "ADMIN_TLS_KEY"):
        assert example[var].startswith(target + "/"), var
    assert example["ADMIN_TLS_DIR"] == mount.split("}:", 1)[0].removeprefix("${ADMIN_TLS_DIR:-")
