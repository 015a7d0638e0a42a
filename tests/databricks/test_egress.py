"""The forwarder's real egress path: HTTP CONNECT proxy + TLS with a private CA, verification on."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from edge.spool import SpoolReader
from simulators.kit.emulator import Emulator
from simulators.kit.proxy import ConnectProxy

ROOT = Path(__file__).resolve().parents[2]


def run_edge(tmp: Path, emu: Emulator, env: dict, seconds: float) -> subprocess.Popen:
    cfg = {
        "appliance_id": "plant-proxy",
        "data_dir": str(tmp / "data"),
        "spool": {"path": str(tmp / "spool.db"), "max_bytes": "64MiB"},
        "zerobus": {"endpoint": emu.grpc_endpoint, "workspace_url": emu.workspace_url, "client_id": emu.client_id,
                    "client_secret": emu.client_secret, "reconnect_max": "2s"},
        "sources": [{"name": "demo", "type": "synthetic", "rate": 500, "points": 10}],
    }
    (tmp / "edge.yaml").write_text(yaml.safe_dump(cfg))
    full_env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    full_env.update(PYTHONPATH=str(ROOT), **env)
    return subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(tmp / "edge.yaml")], cwd=ROOT,
                            env=full_env, stdout=open(tmp / "edge.log", "ab"), stderr=subprocess.STDOUT)


def wait_for(pred, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.3)
    return False


def forwarder_state(spool: Path) -> dict:
    with SpoolReader(spool) as r:
        states = r.states("forwarder")
    return states[0]["value"].get("state") if states else {}


def test_forwards_through_a_connect_proxy_over_tls(tmp_path):
    with Emulator(tls=True) as emu, ConnectProxy(allow_ports=[emu.grpc_port, emu.http_port]) as proxy:
        env = {"https_proxy": proxy.url, "HTTPS_PROXY": proxy.url, "NO_PROXY": "", **emu.sdk_env()}
        edge = run_edge(tmp_path, emu, env, 10)
        try:
            assert wait_for(lambda: emu.table_stats().get("rows", 0) >= 1000, 60), (tmp_path / "edge.log").read_text()[-2000:]
        finally:
            edge.terminate()
            edge.wait(30)
        tunnels = " ".join(proxy.connects())
        assert f"127.0.0.1:{emu.grpc_port}" in tunnels  # the gRPC stream went through the proxy
        assert f"127.0.0.1:{emu.http_port}" in tunnels  # and so did the OAuth token fetch
        app = emu.table_stats()["appliances"]["plant-proxy"]
        assert app["unexplained_missing"] == []


def test_untrusted_ca_keeps_everything_spooled_and_says_why(tmp_path):
    with Emulator(tls=True) as emu:
        # The system bundle without the emulator's CA: verification must fail, never be skipped.
        edge = run_edge(tmp_path, emu, {"SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt"}, 10)
        try:
            spool = tmp_path / "spool.db"
            assert wait_for(lambda: spool.exists() and forwarder_state(spool) not in ({}, "starting", "connecting"), 60)
            time.sleep(3)
            with SpoolReader(spool) as r:
                stats = r.stats()
                fwd = r.states("forwarder")[0]
        finally:
            edge.terminate()
            edge.wait(30)
        assert emu.table_stats().get("rows", 0) == 0
        assert stats["appended_total"] > 0 and stats["depth_seqs"] == stats["appended_total"]
        text = str(fwd)
        assert "backing_off" in text or "blocked" in text
        assert "token endpoint unreachable" in text  # the SDK hides the TLS cause; `edge doctor` names it
