"""Connect failures explained in words: a security mismatch lists what the server offers, a refused
server certificate names its real cause, and routine events are one log line, not a traceback."""

from __future__ import annotations

import datetime as dt
import logging
import shutil

import pytest
from asyncua import ua
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import simulators.opcua.server as simserver
from edge.sources.opcua.diagnose import (certificate_problems, endpoint_summary, explain_certificate,
                                         explain_connect_error, is_routine)
from edge.sources.opcua.quietlog import RoutineFilter
from simulators.kit.aio import running, wait_until
from simulators.opcua.server import APP_URI, SimServer

pytestmark = [pytest.mark.timeout(120)]

NODES = {"name": "g", "publishing_interval": "100ms", "sampling_interval": "0",
         "nodes": ["ns=2;s=line1.press1.temperature"]}
NOW = dt.datetime.now(dt.timezone.utc)


def make_cert(*, san: list[x509.GeneralName] | None, days=(-1, 365)) -> tuple[x509.Certificate, bytes]:
    """A server certificate as a vendor might issue it: ``san`` None leaves out subjectAltName."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vendor plc")])
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(NOW + dt.timedelta(days=days[0])).not_valid_after(NOW + dt.timedelta(days=days[1]))
         .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=True,
                                      data_encipherment=True, key_agreement=False, key_cert_sign=True,
                                      crl_sign=False, encipher_only=False, decipher_only=False), critical=False)
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    if san is not None:
        b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
    cert = b.sign(key, hashes.SHA256())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    return cert, pem


def _pki(rig):
    return rig.tmp_path / "data" / "pki" / "opcua"


def _endpoint(policy: str, mode: int, tokens=(ua.UserTokenType.Anonymous,)):
    return ua.EndpointDescription(
        EndpointUrl="opc.tcp://plc:4840", SecurityMode=ua.MessageSecurityMode(mode),
        SecurityPolicyUri=f"http://opcfoundation.org/UA/SecurityPolicy#{policy}",
        UserIdentityTokens=[ua.UserTokenPolicy(TokenType=t) for t in tokens])


# ---------------------------------------------------------------- pure


def test_asyncuas_bare_mismatch_is_named_and_the_offer_listed():
    eps = [_endpoint("None", 1), _endpoint("Basic256Sha256", 2, (ua.UserTokenType.Anonymous, ua.UserTokenType.UserName))]
    assert endpoint_summary(eps) == ["None / None, users: Anonymous",
                                     "Basic256Sha256 / Sign, users: Anonymous, UserName"]
    raw = ua.UaError("No matching endpoints: 3, http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256")
    text = explain_connect_error(raw, endpoints=eps)
    assert "Basic256Sha256 / SignAndEncrypt" in text and "Basic256Sha256 / Sign, users: Anonymous, UserName" in text
    assert "3," not in text and "http://" not in text


@pytest.mark.parametrize("san,days,words", [
    (None, (-1, 365), "has no subjectAltName"),
    ([x509.DNSName("plc")], (-1, 365), "its subjectAltName has no URI"),
    ([x509.UniformResourceIdentifier("urn:other")], (-1, 365), "urn:other does not match the server's ApplicationUri"),
    ([x509.UniformResourceIdentifier(APP_URI)], (-30, -1), "it expired on"),
    ([x509.UniformResourceIdentifier(APP_URI)], (2, 30), "it is not valid before"),
])
def test_certificate_problems_are_named(san, days, words):
    cert, _ = make_cert(san=san, days=days)
    problems = certificate_problems(cert, APP_URI, trusted=True)
    assert len(problems) == 1 and words in problems[0]


def test_the_move_hint_only_for_a_certificate_that_is_not_trusted_yet():
    cert, _ = make_cert(san=[x509.UniformResourceIdentifier(APP_URI)])
    assert explain_certificate(cert, APP_URI, trusted=False, rejected_file="r/x.der", trusted_dir="t") == \
        "it is not trusted: to trust it, move r/x.der to t/"
    assert "move" not in explain_certificate(cert, APP_URI, trusted=True, rejected_file="r/x.der", trusted_dir="t")


def test_routine_exceptions_lose_their_traceback_and_bugs_keep_it():
    f = RoutineFilter()
    asyncua_log = logging.getLogger("asyncua.client.ua_session.UaSession")
    old = asyncua_log.level
    asyncua_log.setLevel(logging.INFO)
    try:
        for exc, routine in ((ConnectionError("transport lost"), True), (ua.UaStatusCodeError(ua.StatusCodes.BadTimeout), True),
                             (KeyError("bug"), False)):
            rec = logging.LogRecord(asyncua_log.name, logging.ERROR, __file__, 1, "Publish iteration crashed", None,
                                    (type(exc), exc, None))
            assert f.filter(rec) and is_routine(exc) is routine
            assert (rec.exc_info is None and rec.levelno == logging.INFO) is routine
            assert (rec.exc_info is not None and rec.levelno == logging.ERROR) is not routine
    finally:
        asyncua_log.setLevel(old)


# ---------------------------------------------------------------- against real servers


@pytest.fixture
def none_and_sign(monkeypatch):
    """A server hook: the simulator offering only None and Basic256Sha256 / Sign."""
    monkeypatch.setitem(simserver.SECURITY, "none+sign", [ua.SecurityPolicyType.NoSecurity,
                                                          ua.SecurityPolicyType.Basic256Sha256_Sign])
    return "none+sign"


def _no_tracebacks(caplog) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records
            if r.exc_info or (r.levelno >= logging.ERROR and r.name.startswith(("asyncua", "edge")))]


@pytest.mark.anyio
async def test_security_mismatch_names_the_request_and_lists_the_offer(rig, tmp_path, none_and_sign, caplog):
    caplog.set_level(logging.INFO)
    sim = await SimServer(nodes=5, rate=10, security=none_and_sign, cert_dir=tmp_path / "server-pki",
                          users={"op": "pw"}, faults=False, extras=False).start()
    try:
        src = rig.source(sim.endpoint, [NODES], security={"mode": "SignAndEncrypt"})
        status = rig.statuses["plc"]
        async with running(src):
            # (waited for, not read once: on a busy machine an attempt can time out in between)
            await wait_until(lambda: "no endpoint with" in (status.data.get("last_error") or ""), timeout=30,
                             what="the mismatch explained")
            await wait_until(lambda: status.data["errors_total"] >= 2, timeout=30, what="two refused attempts")
        detail = status.snapshot()["last_error"]
        assert "no endpoint with Basic256Sha256 / SignAndEncrypt" in detail, detail
        assert "None / None, users: UserName" in detail and "Basic256Sha256 / Sign, users: UserName" in detail, detail
        mine = [r.getMessage() for r in caplog.records if r.name == "edge.sources.opcua" and r.levelno >= logging.WARNING]
        lines = [m for m in mine if "no endpoint with" in m]
        if len(mine) == len(lines):  # no other problem (a timeout) in between: one line, not one per attempt
            assert len(lines) == 1, lines
        assert all("\n" not in m and "tls_error" in m for m in lines)
        assert _no_tracebacks(caplog) == []
    finally:
        await sim.stop()


@pytest.mark.anyio
async def test_mode_none_against_a_server_without_it_lists_the_offer(rig, tmp_path):
    sim = await SimServer(nodes=5, rate=10, security="sign", cert_dir=tmp_path / "server-pki",
                          faults=False, extras=False).start()
    try:
        src = rig.source(sim.endpoint, [NODES])
        status = rig.statuses["plc"]
        async with running(src):
            await wait_until(lambda: "Basic256Sha256 / Sign" in (status.data.get("last_error") or ""),
                             timeout=30, what="the offer listed")
        assert "no endpoint with None / None" in status.data["last_error"], status.data["last_error"]
    finally:
        await sim.stop()


@pytest.mark.anyio
async def test_a_trusted_certificate_without_a_san_uri_is_refused_for_that_reason(rig, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    cert, key = make_cert(san=None)
    server_pki = tmp_path / "server-pki"
    server_pki.mkdir()
    (server_pki / "server-cert.der").write_bytes(cert.public_bytes(serialization.Encoding.DER))
    (server_pki / "server-key.pem").write_bytes(key)
    sim = await SimServer(nodes=5, rate=10, security="encrypt", cert_dir=server_pki, faults=False, extras=False).start()
    try:
        (_pki(rig) / "trusted").mkdir(parents=True)
        shutil.copy(server_pki / "server-cert.der", _pki(rig) / "trusted" / "vendor.der")
        src = rig.source(sim.endpoint, [NODES], security={"mode": "SignAndEncrypt"})
        status = rig.statuses["plc"]
        async with running(src):
            await wait_until(lambda: "subjectAltName" in (status.data.get("last_error") or ""), timeout=30,
                             what="the refusal explained")
        detail = status.data["last_error"]
        assert "has no subjectAltName" in detail and APP_URI in detail, detail
        assert "move" not in detail and "in the trust list already" in detail, detail
        assert not any((_pki(rig) / "rejected").glob("*.der"))  # nothing to review: it is trusted
        assert _no_tracebacks(caplog) == []
    finally:
        await sim.stop()


@pytest.mark.anyio
async def test_untrusted_certificate_and_disconnect_are_one_line_each(rig, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    sim = await SimServer(nodes=5, rate=10, security="encrypt", cert_dir=tmp_path / "server-pki",
                          faults=False, extras=False).start()
    try:
        src = rig.source(sim.endpoint, [NODES], security={"mode": "SignAndEncrypt"})
        status = rig.statuses["plc"]
        async with running(src):
            await wait_until(lambda: "it is not trusted: to trust it, move" in (status.data.get("last_error") or ""),
                             timeout=30, what="refusal")
            for f in (_pki(rig) / "rejected").glob("*.der"):
                (_pki(rig) / "trusted").mkdir(parents=True, exist_ok=True)
                shutil.move(f, _pki(rig) / "trusted" / f.name)
            await wait_until(lambda: status.data["state"] == "running", timeout=30, what="running once trusted")
            await sim.stop()
            await wait_until(lambda: status.data["state"] in ("connect_failed", "connecting"), timeout=30,
                             what="disconnect noticed")
            await wait_until(lambda: status.data["errors_total"] >= 2, timeout=30, what="a refused reconnect")
        assert _no_tracebacks(caplog) == []
    finally:
        await sim.stop()
