"""Security: Basic256Sha256 Sign / SignAndEncrypt, our own certificate, the server trust list, username/password."""

from __future__ import annotations

import json
import logging
import shutil

import pytest

from simulators.opcua.server import SimServer
from simulators.kit.aio import running, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

NODES = {"name": "g", "publishing_interval": "100ms", "sampling_interval": "0",
         "nodes": ["ns=2;s=line1.press1.temperature", "ns=2;s=line1.press1.pressure"]}


def _pki(rig):
    return rig.tmp_path / "data" / "pki" / "opcua"


@pytest.mark.parametrize("mode", ["Sign", "SignAndEncrypt"])
async def test_secure_modes_with_a_trusted_server(rig, tmp_path, mode):
    sim = await SimServer(nodes=10, rate=50, security="sign" if mode == "Sign" else "encrypt",
                          cert_dir=tmp_path / "server-pki", faults=False).start()
    try:
        (_pki(rig) / "trusted").mkdir(parents=True)
        shutil.copy(sim.cert_path, _pki(rig) / "trusted" / "sim.der")
        src = rig.source(sim.endpoint, [NODES], security={"mode": mode})
        async with running(src):
            await wait_until(lambda: len(rig.readings()) >= 6, what="readings over a secure channel")
        assert (_pki(rig) / "own" / "cert.der").is_file()  # generated on first start, kept in the data dir
        assert oct((_pki(rig) / "own" / "key.pem").stat().st_mode & 0o777) == "0o600"
        assert rig.statuses["plc"].data["failed_count"] == 0
    finally:
        await sim.stop()


async def test_untrusted_server_certificate_is_refused_until_trusted(rig, tmp_path):
    sim = await SimServer(nodes=10, rate=50, security="encrypt", cert_dir=tmp_path / "server-pki", faults=False).start()
    try:
        src = rig.source(sim.endpoint, [NODES], security={"mode": "SignAndEncrypt"})
        status = rig.statuses
        async with running(src):
            await wait_until(lambda: status["plc"].data["errors_total"] >= 1, what="refusal")
            await wait_until(lambda: any((_pki(rig) / "rejected").glob("*.der")), what="rejected cert filed")
            assert rig.readings() == []
            assert status["plc"].data["state"] == "tls_error"
            assert "BadCertificateUntrusted" in status["plc"].data["last_error"]
            # The operator reviews the rejected certificate and trusts it: the next attempt connects.
            (_pki(rig) / "trusted").mkdir(parents=True, exist_ok=True)
            for f in (_pki(rig) / "rejected").glob("*.der"):
                shutil.move(f, _pki(rig) / "trusted" / f.name)
            await wait_until(lambda: len(rig.readings()) >= 2, timeout=20, what="readings after trusting")
    finally:
        await sim.stop()


async def test_username_password_login_and_refusal_without_leaking_the_password(rig, tmp_path, caplog):
    secret = "s3cr3t-Pa55"
    sim = await SimServer(nodes=10, rate=50, security="all", cert_dir=tmp_path / "server-pki",
                          users={"operator": secret}, faults=False).start()
    caplog.set_level(logging.DEBUG)
    try:
        (_pki(rig) / "trusted").mkdir(parents=True)
        shutil.copy(sim.cert_path, _pki(rig) / "trusted" / "sim.der")
        bad = rig.source(sim.endpoint, [NODES], name="wrong", username="operator", password="nope-" + secret,
                         security={"mode": "SignAndEncrypt"})
        good = rig.source(sim.endpoint, [NODES], name="right", username="operator", password=secret,
                          security={"mode": "SignAndEncrypt"})
        async with running(bad), running(good):
            # Waited for, not asserted at the end: the refused source keeps retrying, and on a busy
            # machine a later attempt can time out and replace last_error before the assertion.
            await wait_until(lambda: "BadUserAccessDenied" in (rig.statuses["wrong"].data.get("last_error") or ""),
                             what="login refused with BadUserAccessDenied")
            await wait_until(lambda: rig.statuses["wrong"].data["state"] == "auth_failed", what="state auth_failed")
            await wait_until(lambda: len(rig.readings()) >= 2, what="readings with the right password")
        assert all(r.source == "right" for r in rig.readings())
        text = caplog.text + json.dumps([s.snapshot() for s in rig.statuses.values()], default=str)
        assert secret not in text
        assert secret not in repr(good.cfg)
    finally:
        await sim.stop()
