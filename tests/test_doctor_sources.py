"""``edge doctor --sources`` against real servers: an asyncua server, a pymodbus server, a real Mosquitto.

One passing config per protocol and the failures an engineer meets on commissioning day (wrong
port, wrong password, wrong security mode, untrusted certificate, illegal register, a server that
accepts TCP and never answers), each asserted by status and by the hint that fixes it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml

from edge.cli import main
from edge.config import parse
from edge.control import sourcedoctor, sourcereport
from edge.control.probing import FAIL, PASS, SKIP, WARN
from simulators.kit.broker import Broker, free_port
from simulators.opcua.server import SimServer
from tests.modbus.conftest import start_sim
from tests.mqtt.conftest import broker  # noqa: F401 - the shipped Mosquitto config on a free port
from tests.mqtt.harness import make_certs

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]

OPC_SECRET = "opc-Pa55-never-printed-4f1"
NODE = "ns=2;s=line1.press1.temperature"
GROUPS = [{"name": "g", "nodes": [NODE]}]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def config(tmp_path: Path, *sources: dict):
    return parse({"appliance_id": "plant-doctor", "data_dir": str(tmp_path / "data"), "sources": list(sources)}, env={})


async def rows(tmp_path: Path, *sources: dict, timeout: float = 3.0) -> dict[tuple[str, str], object]:
    checks = await sourcedoctor.check_all(config(tmp_path, *sources), timeout)
    return {(c.source, c.name): c for c in checks}


def statuses(got: dict, source: str) -> dict[str, str]:
    return {name: c.status for (src, name), c in got.items() if src == source}


# ---------------------------------------------------------------- OPC-UA


def opcua(name: str, endpoint: str, **options) -> dict:
    return {"name": name, "type": "opcua", "endpoint": endpoint, "groups": GROUPS, "timeout": 3, **options}


async def test_opcua_passing_and_failing_configs(tmp_path):
    sim = await SimServer(nodes=10, rate=20, security="all", cert_dir=tmp_path / "server-pki",
                          users={"operator": OPC_SECRET}, faults=False).start()
    only_encrypt = await SimServer(nodes=10, rate=20, security="encrypt", cert_dir=tmp_path / "server-pki",
                                   faults=False).start()
    try:
        trusted = tmp_path / "data" / "pki" / "opcua" / "trusted"
        trusted.mkdir(parents=True)
        shutil.copy(sim.cert_path, trusted / "sim.der")
        secure = {"security": {"mode": "SignAndEncrypt"}}
        got = await rows(
            tmp_path,
            opcua("good", sim.endpoint, username="operator", password=OPC_SECRET, **secure),
            opcua("badpass", sim.endpoint, username="operator", password="wrong-" + OPC_SECRET, **secure),
            opcua("anon", sim.endpoint, **secure),
            opcua("badnode", sim.endpoint, username="operator", password=OPC_SECRET, **secure,
                  groups=[{"name": "g", "nodes": ["ns=2;s=no.such.node"]}]),
            opcua("badport", f"opc.tcp://127.0.0.1:{free_port()}/sim"),
            opcua("badmode", only_encrypt.endpoint),
            opcua("sign", only_encrypt.endpoint, security={"mode": "Sign", "pki_dir": str(tmp_path / "other-pki")}),
            opcua("untrusted", only_encrypt.endpoint, security={"mode": "SignAndEncrypt", "pki_dir": str(tmp_path / "p2")}),
        )
    finally:
        await sim.stop()
        await only_encrypt.stop()

    assert statuses(got, "good") == {"reach": PASS, "endpoint": PASS, "trust": PASS, "login": PASS, "read": PASS}
    assert NODE in got["good", "read"].detail and "Good" in got["good", "read"].detail

    assert statuses(got, "badpass")["login"] == FAIL and statuses(got, "badpass")["read"] == SKIP
    assert "BadUserAccessDenied" in got["badpass", "login"].detail
    assert "check badpass.username / password" in got["badpass", "login"].hint
    assert got["anon", "login"].status == FAIL and "set anon.username / password" in got["anon", "login"].hint

    assert got["badnode", "read"].status == FAIL
    assert "does not exist on this server" in got["badnode", "read"].hint

    assert got["badport", "reach"].status == FAIL and "refused" in got["badport", "reach"].detail
    assert "nothing listens on 127.0.0.1:" in got["badport", "reach"].hint
    assert statuses(got, "badport")["endpoint"] == SKIP

    # Security mode None against a server that offers only Basic256Sha256 / SignAndEncrypt.
    assert got["badmode", "endpoint"].status == FAIL
    assert "Basic256Sha256 / SignAndEncrypt" in got["badmode", "endpoint"].detail
    assert "set security.mode: SignAndEncrypt" in got["badmode", "endpoint"].hint
    assert got["sign", "endpoint"].status == FAIL and "set security.mode: SignAndEncrypt" in got["sign", "endpoint"].hint

    # An untrusted server certificate: filed under rejected/, and the hint says which file to move where.
    untrusted = got["untrusted", "trust"]
    assert untrusted.status == FAIL and "BadCertificateUntrusted" in untrusted.detail
    rejected = list((tmp_path / "p2" / "rejected").glob("*.der"))
    assert len(rejected) == 1
    assert untrusted.hint.startswith(f"move {rejected[0]} to {tmp_path / 'p2' / 'trusted'}/")
    assert statuses(got, "untrusted")["login"] == SKIP

    text = json.dumps([c.__dict__ for c in got.values()])
    assert OPC_SECRET not in text


async def test_opcua_security_none_warns_when_the_server_offers_encryption(tmp_path):
    sim = await SimServer(nodes=10, rate=20, security="all", cert_dir=tmp_path / "server-pki", faults=False).start()
    try:
        got = await rows(tmp_path, opcua("plain", sim.endpoint))
    finally:
        await sim.stop()
    assert statuses(got, "plain") == {"reach": PASS, "endpoint": PASS, "security": WARN, "trust": PASS,
                                      "login": PASS, "read": PASS}
    assert "set security.mode: SignAndEncrypt" in got["plain", "security"].hint


# ---------------------------------------------------------------- Modbus


def modbus(name: str, port: int, devices: list[dict]) -> dict:
    return {"name": name, "type": "modbus", "host": "127.0.0.1", "port": port, "devices": devices, "timeout": 0.5}


async def test_modbus_reads_and_decodes_a_block_and_names_an_illegal_register(tmp_path):
    devices = [{"device_id": 1, "points": [{"name": "temp", "address": "40001", "type": "float32", "unit": "degC"},
                                           {"name": "count", "address": "40003", "type": "uint16"}]}]
    sim = await start_sim(devices)
    try:
        sim.set_value("temp", 21.5)
        sim.set_value("count", 7)
        got = await rows(
            tmp_path,
            modbus("good", sim.port, devices),
            modbus("badreg", sim.port, [{"device_id": 1, "points": [{"name": "ghost", "address": "40010"}]}]),
            modbus("badunit", sim.port, [{"device_id": 9, "points": [{"name": "x", "address": "40001"}]}]),
            modbus("badport", free_port(), devices),
        )
    finally:
        await sim.stop()
    assert statuses(got, "good") == {"reach": PASS, "read device 1": PASS}
    assert "temp=21.5 degC" in got["good", "read device 1"].detail and "count=7" in got["good", "read device 1"].detail
    bad = got["badreg", "read device 1"]
    assert bad.status == FAIL and "illegal data address" in bad.detail
    assert bad.hint.startswith("device answered illegal data address for 40010") and "check the register map" in bad.hint
    assert got["badunit", "read device 9"].status == FAIL and "device_id" in got["badunit", "read device 9"].hint
    assert got["badport", "reach"].status == FAIL and statuses(got, "badport")["read device 1"] == SKIP


# ---------------------------------------------------------------- MQTT


def mqtt_source(name: str, port: int, password: str, *, scheme: str = "mqtt", **options) -> dict:
    return {"name": name, "type": "mqtt", "url": f"{scheme}://127.0.0.1:{port}", "username": "edge",
            "password": password, "subscriptions": [{"topic": "plant/#", "qos": 1}], **options}


def publish_retained(b: Broker, topic: str, payload: bytes) -> None:
    """A retained message as device sim1, so a new subscriber gets one at once."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="doctor-test-pub")
    c.username_pw_set("sim1", b.password("sim1"))
    c.connect("127.0.0.1", b.port)
    c.loop_start()
    try:
        c.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)
    finally:
        c.disconnect()
        c.loop_stop()


async def test_mqtt_login_subscribe_message_and_refusals(tmp_path, broker):
    secret = broker.password("edge")
    publish_retained(broker, "plant/sim1/line1/temp", b'{"v": 1}')
    got = await rows(
        tmp_path,
        mqtt_source("good", broker.port, secret),
        mqtt_source("badpass", broker.port, "wrong-" + secret),
        mqtt_source("acl", broker.port, secret, subscriptions=[{"topic": "secret/#", "qos": 1}]),
        mqtt_source("badport", free_port(), secret),
        mqtt_source("v5", broker.port, secret, protocol="5"),
        mqtt_source("v5badpass", broker.port, "wrong-" + secret, protocol="5"),
    )
    assert statuses(got, "good") == {"reach": PASS, "tls": WARN, "login": PASS, "subscribe": PASS, "message": PASS}
    assert "CONNACK 0" in got["good", "login"].detail
    assert "plant/# qos 1" in got["good", "subscribe"].detail
    assert "plant/sim1/line1/temp" in got["good", "message"].detail
    assert got["badpass", "login"].status == FAIL and "CONNACK 135 (Not authorized)" in got["badpass", "login"].detail
    assert "check badpass.username / password" in got["badpass", "login"].hint
    assert statuses(got, "badpass")["subscribe"] == SKIP
    # The shipped broker (dynamic-security plugin) refuses a filter outside the user's rules in the SUBACK.
    assert got["acl", "subscribe"].status == FAIL and got["acl", "message"].status == SKIP
    assert "ACL" in got["acl", "subscribe"].hint
    assert got["badport", "reach"].status == FAIL
    assert statuses(got, "v5") == statuses(got, "good") and "MQTT 5" in got["v5", "login"].detail
    assert got["v5badpass", "login"].status == FAIL and "check v5badpass.username / password" in got["v5badpass", "login"].hint
    assert secret not in json.dumps([c.__dict__ for c in got.values()])


async def test_mqtt_tls_with_the_right_and_a_wrong_ca(tmp_path):
    certs = make_certs("broker.test")
    for name, data in certs.items():
        (tmp_path / name).write_bytes(data)
    b = Broker(certs={k: certs[k] for k in ("ca.crt", "server.crt", "server.key")})
    b.start()
    try:
        secret = b.password("edge")
        got = await rows(
            tmp_path,
            mqtt_source("good", b.tls_port, secret, scheme="mqtts", ca_file=str(tmp_path / "ca.crt")),
            mqtt_source("wrongca", b.tls_port, secret, scheme="mqtts", ca_file=str(tmp_path / "other-ca.crt")),
            mqtt_source("plainport", b.port, secret, scheme="mqtts", ca_file=str(tmp_path / "ca.crt")),
        )
    finally:
        b.cleanup()
    assert got["good", "tls"].status == PASS and got["good", "login"].status == PASS
    assert got["wrongca", "tls"].status == FAIL and "self-signed certificate in certificate chain" in got["wrongca", "tls"].detail
    assert "set wrongca.ca_file to the CA that issued it" in got["wrongca", "tls"].hint
    assert statuses(got, "wrongca")["login"] == SKIP
    assert got["plainport", "tls"].status == FAIL and "does not speak TLS" in got["plainport", "tls"].hint


# ---------------------------------------------------------------- a server that hangs, the http listener, the CLI


async def test_a_server_that_accepts_and_never_answers_does_not_hang_the_doctor(tmp_path):
    held = []

    async def silent(reader, writer):
        held.append(writer)
        await reader.read()  # never answers; returns when the client goes away

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        t0 = time.monotonic()
        got = await rows(tmp_path, opcua("opc", f"opc.tcp://127.0.0.1:{port}"),
                         mqtt_source("broker", port, "x" * 8),
                         {**modbus("plc", port, [{"device_id": 1, "points": [{"name": "x", "address": "40001"}]}]),
                          "timeout": 30, "retries": 2}, timeout=1.0)
        took = time.monotonic() - t0
    finally:
        server.close()
        for w in held:
            w.close()
    assert got["opc", "reach"].status == PASS and got["opc", "endpoint"].status == FAIL
    assert got["broker", "login"].status == FAIL and "no CONNACK" in got["broker", "login"].detail
    assert got["plc", "read device 1"].status == FAIL and "no answer within 2s" in got["plc", "read device 1"].detail
    assert took < sourcedoctor.STEPS * 1.0 + 1.0


async def test_http_listener_free_taken_and_the_cli_exit_code(tmp_path, capsys):
    token = "t" * 24
    blocker = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    taken = blocker.sockets[0].getsockname()[1]
    free = free_port()
    try:
        got = await rows(tmp_path, {"name": "gw", "type": "http", "listen": f"127.0.0.1:{free}", "token": token},
                         {"name": "busy", "type": "http", "listen": f"127.0.0.1:{taken}", "token": token})
        cfg_path = tmp_path / "edge.yaml"
        cfg_path.write_text(yaml.safe_dump({"appliance_id": "plant-doctor", "data_dir": str(tmp_path / "data"),
                                            "sources": [{"name": "gw", "type": "http", "listen": f"127.0.0.1:{free}",
                                                         "token": token},
                                                        {"name": "busy", "type": "http",
                                                         "listen": f"127.0.0.1:{taken}", "token": token}]}))
        code_all = await asyncio.to_thread(main, ["doctor", "--sources", "--config", str(cfg_path), "--timeout", "2"])
        out_all = capsys.readouterr().out
        code_gw = await asyncio.to_thread(main, ["doctor", "--source", "gw", "--json", "--config", str(cfg_path)])
        out_gw = capsys.readouterr().out
    finally:
        blocker.close()
    assert got["gw", "listen"].status == PASS and "is free" in got["gw", "listen"].detail
    assert got["gw", "tls"].status == WARN
    assert got["busy", "listen"].status == FAIL and "taken by another program" in got["busy", "listen"].detail
    assert f"move busy.listen to a free port" in got["busy", "listen"].hint
    assert code_all == 1 and "FAIL  busy" in out_all and "hint: stop the other program" in out_all
    assert "1 check(s) FAILED" in out_all and token not in out_all
    assert code_gw == 0
    doc = json.loads(out_gw)
    assert doc["ok"] is True and {c["source"] for c in doc["checks"]} == {"gw"}


def test_modbus_exception_hints_name_the_addresses_and_the_fix():
    from edge.configtypes import build
    from edge.sources.modbus.config import Config
    from edge.sources.modbus.probe import exception_hint, modicon

    cfg = build(Config, modbus("plc", 502, [{"device_id": 3, "points": [{"name": "a", "address": "30100"},
                                                                         {"name": "b", "address": "30101"}]}]), "s")
    block = cfg.blocks[0]
    assert modicon("holding_registers", 9) == "40010" and modicon("coils", 0) == "00001"
    assert modicon("input_registers", 65535) == "365536"
    assert exception_hint(1, block, cfg).startswith("the device does not serve function 4 (input_registers)")
    assert exception_hint(2, block, cfg).startswith("device answered illegal data address for 30100 (block of 2: a, b)")
    assert "max_block_registers" in exception_hint(3, block, cfg)
    assert "unit id 3" in exception_hint(11, block, cfg) and "run the doctor again" in exception_hint(6, block, cfg)


def test_record_and_document_for_the_page_scrub_and_count():
    from edge.control.probing import Check

    checks = [Check("plc", "reach", PASS, "ok"), Check("plc", "login", FAIL, "password hunter2 refused", "fix it"),
              Check("plc", "read", SKIP, "not run")]
    rec = sourcereport.record(checks, started_ts=1.0, finished_ts=3.5, secrets=["hunter2"])
    assert rec["ok"] is False and rec["counts"] == {PASS: 1, WARN: 0, FAIL: 1, SKIP: 1}
    assert "hunter2" not in json.dumps(rec)
    assert sourcereport.summary(rec).endswith(": plc login")
    doc = sourcereport.document({sourcereport.NAME: rec}, [{"action": sourcereport.ACTION, "status": "pending"},
                                                            {"action": "run_preflight", "status": "pending"}], now=10.0)
    assert doc["pending"] is True and len(doc["requests"]) == 1
    assert doc["last"]["age_s"] == 6.5 and doc["last"]["checks"][1]["hint"] == "fix it"


async def test_opcua_trusted_certificate_whose_san_uri_is_not_the_application_uri(tmp_path):
    from asyncua.crypto import cert_gen
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import ExtendedKeyUsageOID

    # A server certificate issued for another application URI than the one the server announces.
    server_pki = tmp_path / "server-pki"
    server_pki.mkdir()
    key = cert_gen.generate_private_key()
    cert = cert_gen.generate_self_signed_app_certificate(
        key, "urn:somewhere:else", {"organizationName": "test"},
        [x509.UniformResourceIdentifier("urn:somewhere:else"), x509.DNSName("localhost")],
        extended=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], days=30)
    (server_pki / "server-key.pem").write_bytes(cert_gen.dump_private_key_as_pem(key))
    (server_pki / "server-cert.der").write_bytes(cert.public_bytes(Encoding.DER))
    sim = await SimServer(nodes=10, rate=20, security="encrypt", cert_dir=server_pki, faults=False).start()
    try:
        trusted = tmp_path / "data" / "pki" / "opcua" / "trusted"
        trusted.mkdir(parents=True)
        shutil.copy(server_pki / "server-cert.der", trusted / "sim.der")
        got = await rows(tmp_path, opcua("plc", sim.endpoint, security={"mode": "SignAndEncrypt"}))
    finally:
        await sim.stop()
    check = got["plc", "trust"]
    assert check.status == FAIL and "urn:somewhere:else" in check.detail
    assert check.detail.endswith("(BadCertificateUriInvalid): its subjectAltName URI urn:somewhere:else does not match "
                                 "the server's ApplicationUri 'urn:zerobus-edge:opcua-sim'")
    assert check.hint == "reissue the certificate, or fix the server's ApplicationUri"
    assert not list((tmp_path / "data" / "pki" / "opcua" / "rejected").glob("*.der"))


async def test_http_tls_files_load_or_fail_with_a_hint(tmp_path):
    certs = make_certs("gw.test")
    for name, data in certs.items():
        (tmp_path / name).write_bytes(data)
    base = {"type": "http", "token": "t" * 24}
    got = await rows(tmp_path,
                     {**base, "name": "good", "listen": f"127.0.0.1:{free_port()}",
                      "tls_cert": str(tmp_path / "server.crt"), "tls_key": str(tmp_path / "server.key")},
                     {**base, "name": "wrongkey", "listen": f"127.0.0.1:{free_port()}",
                      "tls_cert": str(tmp_path / "server.crt"), "tls_key": str(tmp_path / "client.key")})
    # make_certs' certificates live two days: valid, but inside the 30-day renewal warning.
    assert got["good", "tls"].status == WARN and "expires on" in got["good", "tls"].detail
    assert got["wrongkey", "tls"].status == FAIL and "the key of that certificate" in got["wrongkey", "tls"].hint
