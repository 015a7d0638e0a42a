"""Config loader defects found in the field, each through the real loader (and the real CLI where it matters).

Every test here failed on the hand-made loader: values from the environment
were re-parsed as YAML, malformed ${...} references were taken literally,
errors echoed secrets and URL credentials, and range / cross-field checks
were missing.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edge.config import ZerobusConfig, load, parse
from edge.configtypes import ConfigError, build

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cr3t-Pa55w0rd-never-shown"
TOKEN = "ignition-token-0123456789"

MQTT = {"name": "m", "type": "mqtt", "url": "mqtt://broker:1883", "subscriptions": [{"topic": "plant/#"}]}
HTTP = {"name": "gw", "type": "http", "token": TOKEN}
MODBUS = {"name": "plc", "type": "modbus", "host": "10.0.0.5",
          "devices": [{"device_id": 1, "points": [{"name": "t", "address": "40001"}]}]}
OPCUA = {"name": "ua", "type": "opcua", "endpoint": "opc.tcp://plc:4840", "groups": [{"nodes": ["ns=2;s=A"]}]}


def doc(**top) -> dict:
    return {"appliance_id": "a", **top}


def err(data, env=None) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        parse(data, env or {})
    return e.value


def check_config(tmp_path, data, env=None) -> subprocess.CompletedProcess:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return subprocess.run([sys.executable, "-m", "edge.cli", "check-config", "--config", str(path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


# --- values from the environment are strings, converted by the field's type only


def test_cli_keeps_an_appliance_id_with_leading_zeros(tmp_path):
    for value in ("0012", "0123"):  # YAML read them as 10 and 83 (octal)
        r = check_config(tmp_path, {"appliance_id": "${EDGE_APPLIANCE_ID}"}, {"EDGE_APPLIANCE_ID": value})
        assert r.returncode == 0, r.stderr
        assert f"appliance {value}\n" in r.stdout


def test_cli_accepts_an_all_digit_secret_and_never_prints_it(tmp_path):
    digits = "12345678901234567890"
    data = doc(zerobus={"client_secret": "${DATABRICKS_CLIENT_SECRET}"},
               sources=[{**HTTP, "token": "${IGNITION_TOKEN}"}])
    r = check_config(tmp_path, data, {"DATABRICKS_CLIENT_SECRET": digits, "IGNITION_TOKEN": "98765432109876543210"})
    assert r.returncode == 0, r.stderr
    cfg = parse(data, {"DATABRICKS_CLIENT_SECRET": digits, "IGNITION_TOKEN": "98765432109876543210"})
    assert cfg.zerobus.client_secret == digits and cfg.sources[0].token == "98765432109876543210"
    assert digits not in r.stdout + r.stderr


def test_an_all_digit_secret_written_in_the_file_must_be_quoted(tmp_path):
    """Unquoted, YAML makes it a number (0x1F or 1_000 would not survive as text): refused with the hint, not echoed."""
    path = tmp_path / "config.yaml"
    path.write_text("appliance_id: a\nzerobus: {client_secret: 12345678901234567890}\n")
    with pytest.raises(ConfigError) as e:
        load(path, {})
    assert e.value.path == "zerobus.client_secret" and "quote" in e.value.message
    assert "12345678901234567890" not in str(e.value)
    path.write_text("appliance_id: a\nzerobus: {client_secret: '12345678901234567890'}\n")
    assert load(path, {}).zerobus.client_secret == "12345678901234567890"


def test_a_number_field_is_converted_from_its_variable():
    cfg = parse(doc(sources=[{**MODBUS, "port": "${PORT}"}], zerobus={"streams": "${N:-2}"}), {"PORT": "1502"})
    assert cfg.sources[0].port == 1502 and cfg.zerobus.streams == 2


def test_every_field_type_converts_a_variable_by_its_declaration():
    source = {**MODBUS, "address_base": "${BASE}", "enabled": "${ON}", "timeout": "${T}",
              "devices": [{"device_id": "${ID}", "points": [{"name": "${NAME}", "address": "${ADDR}", "scale": "${K}"}]}]}
    env = {"BASE": "1", "ON": "false", "T": "250ms", "ID": "3", "NAME": "007", "ADDR": "40001", "K": "0.5"}
    src = parse(doc(sources=[source]), env).sources[0]
    assert (src.address_base, src.enabled, src.timeout) == (1, False, 0.25)
    point = src.points[0]
    assert (src.devices[0].device_id, point.name, point.address, point.scale) == (3, "007", 0, 0.5)


# --- malformed references are errors naming the field


@pytest.mark.parametrize("ref", ["${IGNITION_TOKEN", "${IGNITION_TOKEN }", "${}", "abc${1X}", "${A:-x"])
def test_a_malformed_reference_is_an_error_naming_the_field(ref):
    e = err(doc(sources=[{**HTTP, "token": ref}]), {"IGNITION_TOKEN": TOKEN, "A": "x"})
    assert e.path == "sources[0].token" and "malformed" in e.message


@pytest.mark.parametrize("ref", ["${A:-${IGNITION_TOKEN_FALLBACK}}", "${A:-${IGNITION_TOKEN:-x}}"])
def test_a_reference_inside_a_default_is_an_error_not_literal_text(ref):
    """It was read as the default "${IGNITION_TOKEN_FALLBACK" and a "}": a 26-character public token."""
    e = err(doc(sources=[{**HTTP, "token": ref}]), {"IGNITION_TOKEN": TOKEN, "IGNITION_TOKEN_FALLBACK": TOKEN})
    assert e.path == "sources[0].token" and "default cannot hold another reference" in e.message


@pytest.mark.parametrize("ref", ["${IGNITION_TOKEN", "${IGNITION_TOKEN }"])
def test_cli_rejects_an_unclosed_reference_naming_the_field(tmp_path, ref):
    r = check_config(tmp_path, doc(sources=[{**HTTP, "token": ref}]), {"IGNITION_TOKEN": TOKEN})
    assert r.returncode == 2
    assert "sources[0].token" in r.stderr and "malformed" in r.stderr
    assert TOKEN not in r.stdout + r.stderr


# --- no error prints a secret, a value from a variable, or URL credentials


@pytest.mark.parametrize("data, path", [
    (doc(zerobus={"batch_max_records": "${DATABRICKS_CLIENT_SECRET}"}), "zerobus.batch_max_records"),
    (doc(zerobus={"ack_timeout": "${DATABRICKS_CLIENT_SECRET}"}), "zerobus.ack_timeout"),
    (doc(spool={"when_full": "${DATABRICKS_CLIENT_SECRET}"}), "spool.when_full"),
    (doc(zerobus={"table": "${DATABRICKS_CLIENT_SECRET}"}), "zerobus.table"),
    (doc(sources=[{**MQTT, "url": "http://user:${DATABRICKS_CLIENT_SECRET}@broker"}]), "sources[0].url"),
    (doc(sources=[{**MQTT, "url": "mqtt://broker:1883/?password=${DATABRICKS_CLIENT_SECRET}"}]), "sources[0].url"),
    (doc(sources=[{**MQTT, "url": "mqtt://user:${DATABRICKS_CLIENT_SECRET}@broker:1883"}]), "sources[0].url"),
    (doc(sources=[{**OPCUA, "endpoint": "opc.tcp://plc:4840/?token=${DATABRICKS_CLIENT_SECRET}"}]), "sources[0].endpoint"),
    (doc(zerobus={"workspace_url": "https://host/x?secret=${DATABRICKS_CLIENT_SECRET}"}), "zerobus.workspace_url"),
    (doc(sources=[{**HTTP, "listen": "${DATABRICKS_CLIENT_SECRET}"}]), "sources[0].listen"),
])
def test_cli_never_prints_a_secret(tmp_path, data, path):
    r = check_config(tmp_path, data, {"DATABRICKS_CLIENT_SECRET": SECRET})
    assert r.returncode == 2, r.stdout
    assert path in r.stderr
    assert SECRET not in r.stderr + r.stdout


# Secrets with characters that URL redaction splits on (@ & # ;), or that a repr() escapes
# (backslash, quotes, tab, invisible unicode): before, half of the first kind was left after
# the redaction, and the escaped spelling of the second was not recognised as the value.
ODD_SECRETS = ["p@ss-w0rd-long", "abc&def-long-x", "abc#def-long-x", "a;b=c&d-long", "sec\\ret-long",
               "sec'ret\"long", "sec\tret-long", "s\u00e9cret-l\u00f4ng\u200b"]


def _fragments(secret: str) -> set[str]:
    """The secret, its repr()-escaped spelling, and every 5-character piece of either."""
    out = set()
    for text in (secret, repr(secret)[1:-1]):
        out |= {text[i:i + 5] for i in range(len(text) - 4)}
    return out


@pytest.mark.parametrize("secret", ODD_SECRETS)
@pytest.mark.parametrize("data", [
    doc(sources=[{**MQTT, "url": "http://user:${PW}@broker"}]),
    doc(sources=[{**MQTT, "url": "mqtt://broker:1883/?password=${PW}"}]),
    doc(sources=[{**MQTT, "url": "mqtt://broker:1883/${PW}"}]),
    doc(sources=[{**OPCUA, "endpoint": "opc.tcp://plc:4840/?token=${PW}"}]),
    doc(sources=[{**HTTP, "listen": "${PW}"}]),
    doc(spool={"max_bytes": "${PW}"}),
    doc(zerobus={"ack_timeout": "${PW}"}),
], ids=["userinfo", "query", "path", "opcua-query", "listen", "size", "duration"])
def test_no_piece_of_a_secret_with_odd_characters_is_printed(data, secret):
    e = err(data, {"PW": secret})
    leaked = {f for f in _fragments(secret) if f in str(e)}
    assert not leaked, f"{str(e)!r} shows {leaked}"


def test_cli_never_prints_a_secret_split_by_url_redaction(tmp_path):
    r = check_config(tmp_path, doc(sources=[{**MQTT, "url": "http://user:${PW}@broker"}]), {"PW": "p@ss-w0rd-long"})
    assert r.returncode == 2 and "sources[0].url" in r.stderr
    assert "w0rd" not in r.stdout + r.stderr


def test_a_huge_number_from_a_variable_is_not_echoed_even_in_part():
    e = err(doc(spool={"max_bytes": "${PW}"}), {"PW": "7" * 400})
    assert e.path == "spool.max_bytes" and "7777" not in str(e)


def test_literal_url_credentials_are_redacted_in_errors():
    e = err(doc(zerobus={"endpoint": f"grpc://user:{SECRET}@host/?key={SECRET}"}))
    assert e.path == "zerobus.endpoint" and SECRET not in str(e) and "***" in str(e)


# --- cross-field and range checks


def test_cli_rejects_two_sources_on_one_port(tmp_path):
    data = doc(sources=[{**HTTP, "listen": "0.0.0.0:8088"}, {**HTTP, "name": "gw2", "listen": "10.0.0.1:8088"}])
    r = check_config(tmp_path, data)
    assert r.returncode == 2 and "sources[1].listen" in r.stderr and "8088" in r.stderr


@pytest.mark.parametrize("listeners, clash", [
    (["127.0.0.1:8088", "127.0.0.1:8088"], True),
    (["127.0.0.1:8088", "0.0.0.0:8088"], True),
    (["127.0.0.1:8088", "10.0.0.1:8088"], False),
    (["0.0.0.0:8088", "0.0.0.0:8089"], False),
    # one address spelt two ways: the second bind fails with "Address already in use"
    (["localhost:8088", "127.0.0.1:8088"], True),
    (["[::1]:8088", "localhost:8088"], True),
    (["[::0:1]:8088", "[::1]:8088"], True),
    (["[0:0::0]:8088", "10.0.0.1:8088"], True),
    (["localhost:8088", "127.0.0.2:8088"], False),
    (["gw.plant.local:8088", "GW.plant.local:8088"], True),
])
def test_listeners_collide_on_one_address(listeners, clash):
    data = doc(sources=[{**HTTP, "name": f"gw{i}", "listen": a} for i, a in enumerate(listeners)])
    if clash:
        assert err(data).path == "sources[1].listen"
    else:
        assert len(parse(data, {}).sources) == 2


def test_a_source_listener_collides_with_the_admin_bind():
    assert err(doc(sources=[{**HTTP, "listen": "0.0.0.0:8080"}], admin={"bind": "127.0.0.1:8080"})).path == "admin.bind"
    cfg = parse(doc(sources=[{**HTTP, "listen": "0.0.0.0:8080", "enabled": False}], admin={"bind": ":8080"}), {})
    assert cfg.admin.bind == ":8080"  # a disabled source listens nowhere


@pytest.mark.parametrize("data, path", [
    (doc(zerobus={"endpoint": "https://zerobus.example.com:99999"}), "zerobus.endpoint"),
    (doc(zerobus={"endpoint": "https://zerobus.example.com:0"}), "zerobus.endpoint"),
    (doc(zerobus={"endpoint": "https://zerobus.example.com/v1?x=1"}), "zerobus.endpoint"),
    (doc(zerobus={"workspace_url": "https://ws.example.com/path"}), "zerobus.workspace_url"),
    (doc(sources=[{**MQTT, "url": "mqtt://broker:99999"}]), "sources[0].url"),
    (doc(sources=[{**MQTT, "url": "mqtt://broker:1883/topic"}]), "sources[0].url"),
    (doc(sources=[{**OPCUA, "endpoint": "opc.tcp://plc:99999"}]), "sources[0].endpoint"),
    (doc(sources=[{**OPCUA, "endpoint": "opc.tcp://plc:4840/server?x=1"}]), "sources[0].endpoint"),
    (doc(sources=[{**MODBUS, "port": 99999}]), "sources[0].port"),
    (doc(sources=[{**MODBUS, "host": "tcp://10.0.0.5:502"}]), "sources[0].host"),
    (doc(sources=[{**HTTP, "listen": "0.0.0.0:99999"}]), "sources[0].listen"),
    (doc(admin={"bind": "0.0.0.0:0"}), "admin.bind"),
])
def test_endpoints_are_parsed_and_range_checked(data, path):
    assert err(data).path == path


def test_an_opcua_endpoint_may_have_a_path():
    assert parse(doc(sources=[{**OPCUA, "endpoint": "opc.tcp://plc:4840/freeopcua/server/"}]), {}).sources[0]


def test_cli_rejects_ack_timeout_zero(tmp_path):
    r = check_config(tmp_path, doc(zerobus={"ack_timeout": 0}))
    assert r.returncode == 2 and "zerobus.ack_timeout" in r.stderr


@pytest.mark.parametrize("old", [False, True])
def test_cli_rejects_reconnect_initial_above_max(tmp_path, old):
    keys = ("backoff_initial", "backoff_max") if old else ("reconnect_initial", "reconnect_max")
    r = check_config(tmp_path, doc(sources=[{**MQTT, keys[0]: "10s", keys[1]: "1s"}]))
    assert r.returncode == 2 and "sources[0].reconnect_initial" in r.stderr


@pytest.mark.parametrize("source, old", [
    ({**MQTT}, ("backoff_initial", "backoff_max")),
    ({**MODBUS}, ("reconnect_delay", "reconnect_delay_max")),
    ({**OPCUA}, None),
    (None, ("backoff_initial", "backoff_max")),  # zerobus
])
def test_every_backoff_checks_initial_le_max(source, old):
    section = {"reconnect_initial": "5s", "reconnect_max": "1s"}
    data = doc(sources=[{**source, **section}]) if source else doc(zerobus=section)
    assert err(data).path == ("sources[0]" if source else "zerobus") + ".reconnect_initial"
    if old:  # the old spelling is read as the new one
        section = {old[0]: "5s", old[1]: "1s"}
        data = doc(sources=[{**source, **section}]) if source else doc(zerobus=section)
        assert err(data).path.endswith(".reconnect_initial")


def test_an_old_key_logs_one_warning_naming_the_new_one(caplog):
    with caplog.at_level(logging.WARNING, logger="edge.config"):
        cfg = parse(doc(sources=[{**MODBUS, "reconnect_delay": "2s", "reconnect_delay_max": "20s"}]), {})
    assert (cfg.sources[0].reconnect_initial, cfg.sources[0].reconnect_max) == (2.0, 20.0)
    lines = [r.getMessage() for r in caplog.records if "reconnect_delay " in r.getMessage() + " "]
    assert lines == ["sources[0]: reconnect_delay is deprecated, use reconnect_initial"]
    assert err(doc(zerobus={"backoff_max": "1s", "reconnect_max": "2s"})).path == "zerobus.backoff_max"


def test_validate_does_not_mutate_what_it_checks():
    cfg = ZerobusConfig(workspace_url="https://ws.example.com/")
    cfg.validate("zerobus")
    assert cfg.workspace_url == "https://ws.example.com/"
    assert build(ZerobusConfig, {"workspace_url": "https://ws.example.com/"}).workspace_url == "https://ws.example.com"


def test_numbers_with_leading_zeros_in_the_file_are_not_octal(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("appliance_id: 0012\n"
                    "sources:\n"
                    "  - {name: plc, type: modbus, host: 10.0.0.5, port: 0502,\n"
                    "     devices: [{device_id: 010, points: [{name: t, address: '40001'}]}]}\n")
    cfg = load(path, {})
    assert cfg.appliance_id == "0012"  # YAML 1.1: octal 10
    assert (cfg.sources[0].port, cfg.sources[0].devices[0].device_id) == (502, 10)  # octal: 322 and 8
