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
