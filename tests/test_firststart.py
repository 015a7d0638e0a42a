"""First-start credentials: the environment wins, a generated value is kept, nothing is printed."""

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from edge.firststart import CREDENTIALS, ensure

ROOT = Path(__file__).resolve().parent.parent


def test_generated_once_then_kept(tmp_path):
    assert set(ensure(tmp_path, env={}).values()) == {"generated"}
    first = {n: (tmp_path / n).read_text() for n in CREDENTIALS}
    assert all(len(v) >= 20 for v in first.values()) and len(set(first.values())) == len(first)
    assert all(stat.S_IMODE((tmp_path / n).stat().st_mode) == 0o600 for n in CREDENTIALS)
    assert set(ensure(tmp_path, env={}).values()) == {"kept"}
    assert {n: (tmp_path / n).read_text() for n in CREDENTIALS} == first


def test_environment_wins_also_after_a_change(tmp_path):
    ensure(tmp_path, env={})
    out = ensure(tmp_path, env={"EDGE_ADMIN_PASSWORD": "chosen-by-the-plant"})
    assert out["admin_password"] == "given"
    assert (tmp_path / "admin_password").read_text() == "chosen-by-the-plant"
    with pytest.raises(ValueError, match="MQTT_PASSWORD_EDGE"):
        ensure(tmp_path, env={"MQTT_PASSWORD_EDGE": "short"})


def test_cli_never_prints_values(tmp_path):
    r = subprocess.run([sys.executable, "-m", "edge.cli", "init-secrets", "--dir", str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}, timeout=60)
    assert r.returncode == 0, r.stderr
    for name in CREDENTIALS:
        assert f"{name}: generated" in r.stdout
        assert (tmp_path / name).read_text() not in r.stdout + r.stderr


def test_each_service_share_holds_only_its_files(tmp_path):
    shares = tmp_path / "shares"
    ensure(tmp_path / "master", env={"EDGE_SECRET_SHARES": str(shares)})
    held = {p.name: sorted(f.name for f in p.iterdir()) for p in shares.iterdir()}
    assert held == {"broker": ["mqtt_edge_password", "mqtt_sim1_password"], "edge": ["mqtt_edge_password"],
                    "admin": ["admin_password"], "sim-mqtt": ["mqtt_sim1_password"]}
    assert (shares / "admin" / "admin_password").read_text() == (tmp_path / "master" / "admin_password").read_text()
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in shares.rglob("*") if f.is_file())
    # A changed value reaches every share that holds it.
    ensure(tmp_path / "master", env={"EDGE_SECRET_SHARES": str(shares), "MQTT_PASSWORD_EDGE": "a-new-edge-password"})
    assert {(shares / s / "mqtt_edge_password").read_text() for s in ("broker", "edge")} == {"a-new-edge-password"}


def test_demo_tls_gives_the_emulator_its_key_and_the_edge_a_bundle_with_the_ca(tmp_path):
    import ssl

    shares = tmp_path / "shares"
    ensure(tmp_path / "master", env={"EDGE_SECRET_SHARES": str(shares), "EDGE_DEMO_TLS_HOSTNAMES": "zerobus"})
    assert sorted(f.name for f in (shares / "zerobus").iterdir()) == ["zerobus-ca.pem", "zerobus-server.key", "zerobus-server.pem"]
    assert not (shares / "edge" / "zerobus-server.key").exists() and not list(shares.rglob("ca.key"))
    ca = (shares / "zerobus" / "zerobus-ca.pem").read_text()
    bundle = (shares / "edge" / "ca-bundle.pem").read_text()
    assert bundle.endswith(ca) and bundle.count("BEGIN CERTIFICATE") > 1  # the system CAs, then ours
    ctx = ssl.create_default_context(cafile=str(shares / "edge" / "ca-bundle.pem"))
    assert any(c["subject"] for c in ctx.get_ca_certs())
    # The CA is kept across starts (the edge's bundle stays valid); the server certificate is re-issued.
    ensure(tmp_path / "master", env={"EDGE_SECRET_SHARES": str(shares), "EDGE_DEMO_TLS_HOSTNAMES": "zerobus"})
    assert (shares / "zerobus" / "zerobus-ca.pem").read_text() == ca
