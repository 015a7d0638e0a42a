"""Every protocol folder ships a sample.yaml that the real config parser accepts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edge.config import SOURCE_TYPES, parse

SOURCES = Path(__file__).resolve().parents[2] / "edge" / "sources"
ENV = {"MQTT_PASSWORD": "a-broker-password", "OPCUA_PASSWORD": "an-opcua-password",
       "IGNITION_TOKEN": "0123456789abcdef0123"}


def test_every_source_type_has_a_sample():
    folders = {p.parent.name for p in SOURCES.glob("*/sample.yaml")}
    assert set(SOURCE_TYPES) <= folders, f"no sample.yaml for {set(SOURCE_TYPES) - folders}"


@pytest.mark.parametrize("proto", sorted(SOURCE_TYPES))
def test_the_sample_parses_and_holds_a_source_of_its_type(proto):
    cfg = parse(yaml.safe_load((SOURCES / proto / "sample.yaml").read_text()), env=ENV)
    assert [s.type for s in cfg.sources] == [proto]
    for secret in ENV.values():  # secrets come from the environment, not the sample
        assert secret not in (SOURCES / proto / "sample.yaml").read_text()


@pytest.mark.parametrize("proto", sorted(SOURCE_TYPES))
def test_the_sample_passes_edge_check_config(proto):
    """The command an operator runs: exit 0, the source listed, no secret printed."""
    import os
    import subprocess
    import sys

    root = SOURCES.parents[1]
    r = subprocess.run([sys.executable, "-m", "edge.cli", "check-config", "--config", str(SOURCES / proto / "sample.yaml")],
                       cwd=root, env={**os.environ, "PYTHONPATH": str(root), **ENV}, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "config OK" in r.stdout and f"({proto})" in r.stdout
    assert not any(secret in r.stdout + r.stderr for secret in ENV.values())
