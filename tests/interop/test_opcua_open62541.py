"""Interop: our OPC-UA collector against open62541 1.4 (C), an OPC-UA stack we did not write.

open62541 is built from Debian trixie's source package by ops/images/open62541.sh (once per
machine, cached under /var/cache/zerobus-edge/); simulators/foreign/open62541_server.c is
compiled against it here. Checked on the real collector into a real spool: every built-in type
by subscription with its Variant type, value and the server's SourceTimestamp, the
EngineeringUnits property, a server killed and restarted (open62541 has no history here: the
gap is reported, not filled), UserName login and Basic256Sha256 Sign / SignAndEncrypt with the
certificates exchanged both ways. Results: edge/sources/opcua/README.md, "Interoperability".
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from simulators.foreign.checks import duplicated, every_type_has, landed, mismatches, subscription_problems
from simulators.foreign.process import ForeignServer
from simulators.foreign.scenarios import collect, kill_and_restart
from simulators.foreign.values import TYPES
from simulators.kit.aio import running, wait_until
from simulators.opcua.server import APP_URI, ensure_server_certificate
from tests.opcua.conftest import anyio_backend, rig  # noqa: F401  (fixtures)

# 600 s: the first test's setup builds open62541 when ops/test.sh has not (~1-4 min on 2 cores).
pytestmark = [pytest.mark.anyio, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
# queue_size: room for 10 s of ticks, so a publish delayed on a busy machine loses none (every tick is checked).
GROUP = {"name": "g", "publishing_interval": "100ms", "sampling_interval": "0", "queue_size": 200,
         "folders": [{"root": "Objects/Plant"}]}
PERIOD_MS = "50"


@pytest.fixture(scope="module")
def binary(tmp_path_factory) -> Path:
    """open62541 from the machine's cache (built by ops/images/open62541.sh when missing) + our server program."""
    built = subprocess.run(["bash", str(ROOT / "ops/images/open62541.sh")], capture_output=True, text=True, timeout=900)
    assert built.returncode == 0, built.stderr[-3000:]
    lib = Path(built.stdout.split()[-1])
    out = tmp_path_factory.mktemp("open62541") / "open62541_server"
    cc = subprocess.run(["gcc", "-O1", "-std=c99", "-D_DEFAULT_SOURCE", f"-I{lib}", "-o", str(out),
                         str(ROOT / "simulators/foreign/open62541_server.c"), str(lib / "libopen62541.a"),
                         "-lssl", "-lcrypto", "-lpthread", "-lm"], capture_output=True, text=True, timeout=300)
    assert cc.returncode == 0, cc.stderr[-3000:]
    return out


@pytest.fixture
def server(binary, tmp_path):
    srv = ForeignServer([str(binary)], tmp_path, ["--period", PERIOD_MS])
    yield srv
    srv.stop()


async def test_every_type_by_subscription_with_the_servers_source_timestamps(server, rig):
    src = await collect(server.start(), rig, GROUP)
    readings = rig.readings()
    assert subscription_problems(src.stats, readings, server.ticks()) == []
    # open62541 sends a ServerTimestamp with each notification (TimestampsToReturn Both), ours never replaces it.
    assert all(r.HasField("server_ts") and r.server_ts >= r.source_ts for r in readings if r.kind == "reading")


async def test_server_killed_and_restarted_values_resume_and_the_gap_is_reported(server, rig):
    src = await kill_and_restart(server, rig, GROUP)
    status = rig.statuses["plc"]
    readings, ticks = rig.readings(), server.ticks()
    assert mismatches(readings, ticks) == []
    assert duplicated(readings) == []  # none after the re-subscribe
    assert src.stats["subscribed"] == len(TYPES)
    # No history in this open62541 build: HistoryRead is refused, our back-fill says so and marks the gap.
    assert "history" in (status.data.get("last_backfill") or "") + (status.data.get("last_error") or "")
    gaps = {r.point: json.loads(r.value_json) for r in readings if r.kind == "gap"}
    assert set(gaps) == {f"Plant/{t}" for t in TYPES}, status.data.get("last_backfill")
    # The whole service is refused (BadServiceUnsupported): that is "no history", not a failed read.
    assert {r.loss_reason for r in readings if r.kind == "gap"} == {"history_unsupported"}
    assert status.data.get("backfill_unsupported") == len(TYPES), status.data.get("last_backfill")


@pytest.mark.parametrize("mode", ["Sign", "SignAndEncrypt"])
async def test_username_and_basic256sha256_with_certificates_exchanged_both_ways(binary, tmp_path, rig, mode):
    cert, key = ensure_server_certificate(tmp_path / "server-pki")
    pki = rig.tmp_path / "data" / "pki" / "opcua"
    (pki / "trusted").mkdir(parents=True)
    shutil.copy(cert, pki / "trusted" / "open62541.der")  # we trust the server
    secure = ["--period", PERIOD_MS, "--cert", str(cert), "--key", str(key), "--uri", APP_URI, "--user", "op:Pa55-w0rd"]
    # The server trusts only its own certificate at first: ours is refused.
    server = ForeignServer([str(binary)], tmp_path, secure + ["--trust", str(cert)]).start()
    try:
        src = rig.source(server.endpoint, [GROUP], username="op", password="Pa55-w0rd", security={"mode": mode})
        status = rig.statuses["plc"]
        async with running(src):
            await wait_until(lambda: status.data["errors_total"] >= 1 and (pki / "own" / "cert.der").is_file(),
                             what="refused by the server")
            refused = status.data["state"], status.data["last_error"]
            assert rig.readings() == []
            # The operator gives the server our certificate (generated on our first start).
            server.stop()
            server.start(secure + ["--trust", str(pki / "own" / "cert.der")])
            await wait_until(lambda: every_type_has(rig.readings(), 3), timeout=20, what="values over the secure channel")
        # open62541 answers an untrusted client certificate with BadSecurityChecksFailed.
        assert refused[0] == "tls_error" and "BadSecurityChecksFailed" in refused[1], refused
        assert mismatches(rig.readings(), server.ticks()) == []
        wrong = rig.source(server.endpoint, [GROUP], name="wrong", username="op", password="nope",
                           security={"mode": mode})
        # Mode None: the password still goes encrypted, with the policy the server's user token policy names.
        plain = rig.source(server.endpoint, [GROUP], name="plain", username="op", password="Pa55-w0rd")
        async with running(wrong), running(plain):
            await wait_until(lambda: rig.statuses["wrong"].data["state"] == "auth_failed", what="wrong password refused")
            await wait_until(lambda: every_type_has([r for r in rig.readings() if r.source == "plain"], 1),
                             what="values with a login on a None channel")
        assert "BadUserAccessDenied" in rig.statuses["wrong"].data["last_error"]
    finally:
        server.stop()


async def test_absolute_deadband_applied_by_open62541_and_refused_for_non_numeric_nodes(server, rig):
    """open62541 applies the absolute deadband against the last reported value; it answers
    BadFilterNotAllowed for Boolean / String / DateTime, which we then subscribe without the filter."""
    await collect(server.start(), rig, {**GROUP, "deadband_type": "absolute", "deadband_value": 1.0}, 5)
    readings, ticks = rig.readings(), server.ticks()
    assert mismatches(readings, ticks) == []
    got = landed(readings, ticks)
    k = {t: [ticks[ts] for ts in got[t]] for t in ("Int32", "UInt16", "Double", "Boolean", "String", "DateTime")}
    steps = {t: {b - a for a, b in zip(v, v[1:])} for t, v in k.items()}
    # +1 per tick: > 1.0 every 2nd tick; Double +1/3 per tick: every 4th; the unfiltered ones every tick.
    assert steps == {"Int32": {2}, "UInt16": {2}, "Double": {4}, "Boolean": {1}, "String": {1}, "DateTime": {1}}
    assert "deadband not supported for 3 nodes" in rig.statuses["plc"].data["detail"]
