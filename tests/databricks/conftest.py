from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from simulators.kit.emulator import Emulator
from simulators.kit.workspace import Workspace

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def emu():
    with Emulator() as e:
        yield e


@pytest.fixture
def workspace(emu):
    with Workspace(emu) as ws:
        yield ws


def write_config(path: Path, *, endpoint: str, workspace_url: str, secret: str = "test-secret", **zerobus) -> Path:
    cfg = {
        "appliance_id": "plant-dbx",
        "data_dir": str(path.parent / "data"),
        "spool": {"path": str(path.parent / "spool.db"), "max_bytes": "64MiB"},
        "zerobus": {"endpoint": endpoint, "workspace_url": workspace_url, "client_id": "test-client",
                    "client_secret": secret, **zerobus},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def edge(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "edge.cli", *args], cwd=ROOT, env=full_env, capture_output=True,
                          text=True, timeout=timeout)
