"""Interop: our OPC-UA collector against FreeOpcUa python-opcua 0.98.13, an OPC-UA stack we did not write.

(Our collector and simulator use asyncua, python-opcua's successor: same project, rewritten;
the wire encoding, the subscription service and the history storage are separate code.)
The server (simulators/foreign/pyopcua_server.py) runs as its own process. Checked on the real
collector into a real spool: every built-in type by subscription with its value, Variant type
and the server's SourceTimestamp, EngineeringUnits, a server killed and restarted (the gap is
reported), our back-fill reading python-opcua's in-memory history after an edge restart, and
UserName login over Basic256Sha256 Sign / SignAndEncrypt. Results:
edge/sources/opcua/README.md, "Interoperability".
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

import pytest

from simulators.foreign.checks import (duplicated, every_type_has, landed, mismatches, problems,
                                      subscription_problems)
from simulators.foreign.process import ForeignServer
from simulators.foreign.scenarios import collect, kill_and_restart
from simulators.foreign.values import TYPES
from simulators.kit.aio import running, wait_until
from simulators.opcua.server import APP_URI, ensure_server_certificate
from tests.opcua.conftest import anyio_backend, rig  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
# queue_size: room for 10 s of ticks, so a publish delayed on a busy machine loses none (every tick is checked).
GROUP = {"name": "g", "publishing_interval": "100ms", "sampling_interval": "0", "queue_size": 200,
         "folders": [{"root": "Objects/Plant"}]}
PERIOD = ["--period", "50"]


def pyopcua(tmp_path: Path, options: list[str]) -> ForeignServer:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return ForeignServer([sys.executable, "-m", "simulators.foreign.pyopcua_server"], tmp_path, PERIOD + options, env)


@pytest.fixture
def server(tmp_path):
    srv = pyopcua(tmp_path, [])
    yield srv
    srv.stop()


async def test_every_type_by_subscription_with_the_servers_source_timestamps(server, rig):
    src = await collect(server.start(), rig, GROUP)
    assert subscription_problems(src.stats, rig.readings(), server.ticks()) == []


async def test_server_killed_and_restarted_values_resume_and_the_gap_is_reported(server, rig):
    src = await kill_and_restart(server, rig, GROUP)
    status = rig.statuses["plc"]
    readings = rig.readings()
    assert mismatches(readings, server.ticks()) == [] and duplicated(readings) == []
    # python-opcua without a history store answers HistoryRead per node: the gap is marked for every node.
    assert {r.point for r in readings if r.kind == "gap"} == {f"Plant/{t}" for t in TYPES}, status.data["last_backfill"]
    assert src.stats["backfill_unsupported"] + src.stats["backfill_empty"] == len(TYPES), status.data["last_backfill"]


async def test_edge_restart_back_fills_the_gap_from_pyopcua_history(tmp_path, rig):
    server = pyopcua(tmp_path, ["--history"]).start()
    try:
        first = rig.source(server.endpoint, [GROUP], backfill={"checkpoint_interval": "100ms"})
        async with running(first):
            await wait_until(lambda: every_type_has(rig.readings(), 3), what="values before the edge stops")
        down_at = max(server.ticks())
        ticks_then = len(server.ticks())
        await wait_until(lambda: len(server.ticks()) >= ticks_then + 10, what="10 ticks while the edge is down")
        second = rig.source(server.endpoint, [GROUP], backfill={"checkpoint_interval": "100ms"})
        async with running(second):
            await wait_until(lambda: all(max(landed(rig.readings(), server.ticks())[t]) > down_at for t in TYPES)
                             and second.stats["backfilled"] > 0, what="back-fill and live values")
            await wait_until(lambda: rig.statuses["plc"].data["state"] == "running", what="running after back-fill")
        readings = rig.readings()
        assert problems(readings, server.ticks()) == {"mismatches": [], "lost": {}}  # the gap came from history
        assert duplicated(readings) == []
        assert second.stats["backfilled"] >= 10 * len(TYPES)
        assert not [r for r in readings if r.kind == "gap"]
    finally:
        server.stop()


async def test_username_over_basic256sha256_sign_and_sign_and_encrypt_and_over_none(tmp_path, rig, caplog):
    cert, key = ensure_server_certificate(tmp_path / "server-pki")
    server = pyopcua(tmp_path, ["--cert", str(cert), "--key", str(key), "--uri", APP_URI, "--user", "op:Pa55-w0rd"])
    server.start()
    try:
        sources = []
        for name, password, mode in (("sign", "Pa55-w0rd", "Sign"), ("enc", "Pa55-w0rd", "SignAndEncrypt"),
                                     ("wrong", "nope", "SignAndEncrypt"), ("plain", "Pa55-w0rd", "None")):
            pki = tmp_path / name  # one store each, as each source has its own data dir in the appliance
            (pki / "trusted").mkdir(parents=True)
            shutil.copy(cert, pki / "trusted" / "pyopcua.der")  # python-opcua, for its part, accepts any client cert
            sources.append(rig.source(server.endpoint, [GROUP], name=name, username="op", password=password,
                                      security={"mode": mode, "pki_dir": str(pki)}))
        sign, enc, wrong, plain = sources

        def all_flow() -> bool:
            readings = rig.readings()
            return all(every_type_has([r for r in readings if r.source == s], 3) for s in ("sign", "enc", "plain"))

        caplog.set_level(logging.WARNING)
        async with running(sign), running(enc), running(wrong), running(plain):
            await wait_until(all_flow, what="values over Sign, SignAndEncrypt and None")
            await wait_until(lambda: rig.statuses["wrong"].data["state"] == "auth_failed", what="wrong password refused")
        assert "BadUserAccessDenied" in rig.statuses["wrong"].data["last_error"]
        assert mismatches(rig.readings(), server.ticks()) == []
        assert {r.source for r in rig.readings()} == {"sign", "enc", "plain"}
        # Its user token policy names no security policy: on None the password travels in plain text, and we say so.
        assert any("plain: security mode None: the password is protected only if" in m for m in caplog.messages)
        assert "Sending plain-text password" in caplog.messages  # asyncua's own warning, as it did
    finally:
        server.stop()
