"""Each service loads only its section's secrets; the schema is printed for editors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edge.config import SOURCE_TYPES, load
from edge.configtypes import ConfigError, Secret

ROOT = Path(__file__).resolve().parents[2]
CLIENT_SECRET = "databricks-client-secret-value"
IGNITION = "ignition-token-value-0123456789"
MQTT_PW = "mqtt-password-value"

DOC = {
    "appliance_id": "a",
    "zerobus": {"client_secret": "${DATABRICKS_CLIENT_SECRET}"},
    "sources": [
        {"name": "gw", "type": "http", "token": "${IGNITION_TOKEN}"},
        {"name": "m", "type": "mqtt", "url": "mqtt://broker", "username": "edge", "password": "${MQTT_PASSWORD}",
         "subscriptions": [{"topic": "a/#"}]},
    ],
    "admin": {"password": "${EDGE_ADMIN_PASSWORD}"},
}


def _everything(cfg) -> str:
    """Every string reachable from the loaded config, secrets included (their real value, not their repr)."""
    out = []

    def walk(obj):
        if isinstance(obj, str):
            out.append(str.__str__(obj))
        elif isinstance(obj, (list, tuple)):
            for x in obj:
                walk(x)
        elif isinstance(obj, dict):
            for x in obj.values():
                walk(x)
        elif hasattr(obj, "__dict__"):
            walk(vars(obj))
    walk(cfg)
    return "\n".join(out)


def test_the_admin_process_holds_no_other_sections_secrets(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(DOC))
    env = {"DATABRICKS_CLIENT_SECRET": CLIENT_SECRET, "IGNITION_TOKEN": IGNITION, "MQTT_PASSWORD": MQTT_PW,
           "EDGE_ADMIN_PASSWORD": "admin-password-1"}
    full = load(path, env)
    assert (full.zerobus.client_secret, full.sources[0].token) == (CLIENT_SECRET, IGNITION)

    admin = load(path, env, section="admin")
    assert admin.admin.password == "admin-password-1"
    held = _everything(admin)
    for value in (CLIENT_SECRET, IGNITION, MQTT_PW):
        assert value not in held
    assert admin.zerobus.client_secret.withheld and admin.sources[0].token.withheld
    assert repr(admin.zerobus.client_secret) == "Secret(<not loaded>)"


def test_other_sections_secret_files_are_not_even_read(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(DOC))
    missing = str(tmp_path / "no-such-file")
    env = {"DATABRICKS_CLIENT_SECRET_FILE": missing, "IGNITION_TOKEN_FILE": missing, "MQTT_PASSWORD_FILE": missing,
           "EDGE_ADMIN_PASSWORD": "admin-password-1"}
    cfg = load(path, env, section="admin")  # the whole config would fail: cannot read ..._FILE
    assert cfg.sources[1].password.withheld and isinstance(cfg.sources[1].password, Secret)


def test_cli_prints_the_json_schema():
    r = subprocess.run([sys.executable, "-m", "edge.cli", "config", "schema"], capture_output=True, text=True,
                       cwd=ROOT, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    schema = json.loads(r.stdout)
    assert schema["required"] == ["appliance_id"]
    zerobus = schema["$defs"]["ZerobusConfig"]
    assert {"reconnect_initial", "reconnect_max"} <= set(zerobus["properties"])
    assert zerobus["additionalProperties"] is False  # unknown keys are errors, in the editor too
    assert zerobus["properties"]["client_secret"]["writeOnly"] is True
    variants = schema["properties"]["sources"]["items"]["oneOf"]
    kinds = {schema["$defs"][v["$ref"].rsplit("/", 1)[1]]["properties"]["type"]["const"] for v in variants}
    assert kinds == set(SOURCE_TYPES)
    assert "bind" in schema["properties"]["admin"]["properties"]


def test_the_schema_patterns_accept_what_the_parsers_accept():
    import re

    from edge.configvalues import ByteSize, ConfigError, Duration, parse_duration, parse_size

    for cls, parse, samples in (
        (ByteSize, parse_size, ["512MiB", "10 GB", "4k", "1KIB", "12", "1.5tb", "3 parsec", "-1", "MiB", "2 kb"]),
        (Duration, parse_duration, ["250ms", "30s", "5m", "2h", "7d", "3MIN", "1.5", "1 parsec", "-2s", "ms", "1 w"]),
    ):
        pattern = cls.__get_pydantic_json_schema__(None, None)["anyOf"][1]["pattern"]
        for text in samples:
            try:
                parse(text)
                accepted = True
            except ConfigError:
                accepted = False
            assert bool(re.match(pattern, text)) == accepted, (cls.__name__, text)


def test_the_admin_page_and_its_server_load_only_the_admin_section(tmp_path, monkeypatch):
    """What the admin process really runs: ``create_app`` (each gunicorn worker) and ``serve`` (the launcher)."""
    from edge.admin import create_app
    from edge.admin.server import serve

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**DOC, "data_dir": str(tmp_path), "admin": {
        **DOC["admin"], "state_dir": str(tmp_path / "state"), "commands_dir": str(tmp_path / "commands")}}))
    env = {"DATABRICKS_CLIENT_SECRET": CLIENT_SECRET, "IGNITION_TOKEN": IGNITION, "MQTT_PASSWORD": MQTT_PW,
           "EDGE_ADMIN_PASSWORD": "admin-password-1"}
    state = create_app(str(path), env=env).extensions["edge_admin"]
    assert state.cfg.admin.password == "admin-password-1"
    held = _everything(state.cfg)
    assert not [v for v in (CLIENT_SECRET, IGNITION, MQTT_PW) if v in held]
    assert state.cfg.zerobus.client_secret.withheld and state.cfg.sources[0].token.withheld

    # The launcher validates the config too: with the other services' secret files unreadable, the
    # whole config would fail (cannot read ..._FILE), the admin section alone does not.
    for var in ("DATABRICKS_CLIENT_SECRET", "IGNITION_TOKEN", "MQTT_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv(f"{var}_FILE", str(tmp_path / "no-such-file"))
    monkeypatch.setenv("EDGE_ADMIN_PASSWORD", "admin-password-1")
    argv = serve(str(path), exec_=False)
    assert argv[-1] == "edge.admin:create_app()"
    with pytest.raises(ConfigError, match="cannot read [A-Z_]+_FILE"):
        load(path)


def test_the_compose_admin_service_is_not_given_the_other_services_secrets():
    """The admin container's environment and mounts carry no Databricks, Ignition or MQTT credential. Where
    the edge forwards to is no secret: production gives the admin the edge's ZEROBUS_ENDPOINT and
    ZEROBUS_TABLE (without them the dashboard showed the config's defaults, the emulator's, until the
    forwarder reported)."""
    shown = {"ZEROBUS_ENDPOINT", "ZEROBUS_TABLE"}
    for name in ("docker-compose.yml", "docker-compose.production.yml"):
        admin = yaml.safe_load((ROOT / name).read_text())["services"].get("admin", {})
        env = admin.get("environment", {})
        names = set(env) if isinstance(env, dict) else {e.split("=", 1)[0] for e in env}
        assert not [n for n in names - shown if n.startswith(("DATABRICKS_", "IGNITION_", "MQTT_", "ZEROBUS_"))], (
            name, names)
        assert "env_file" not in admin, name
        secret_volumes = [v for v in admin.get("volumes", []) if isinstance(v, str) and v.startswith("secrets")]
        assert secret_volumes in ([], ["secrets-admin:/secrets:ro"]), (name, secret_volumes)


def test_production_gives_the_admin_the_edges_zerobus_endpoint_and_table():
    base, prod = (yaml.safe_load((ROOT / n).read_text())["services"]
                  for n in ("docker-compose.yml", "docker-compose.production.yml"))
    for key in ("ZEROBUS_ENDPOINT", "ZEROBUS_TABLE"):
        edge = prod["edge"]["environment"].get(key, base["edge"]["environment"][key])
        assert prod["admin"]["environment"].get(key) == edge, key


def _shipped_configs() -> list[Path]:
    return [ROOT / "ops" / "compose" / "edge.yaml", ROOT / "ops" / "config" / "example.yaml",
            *sorted((ROOT / "edge" / "sources").glob("*/sample.yaml"))]


def test_every_shipped_config_is_valid_under_the_json_schema():
    """What an editor checks with the schema agrees with the loader: ``rate: ${EDGE_SYNTHETIC_RATE:-50}`` in a
    number field, ``secure_cookies: ${...}`` in a boolean one (ops/compose/edge.yaml) were flagged before."""
    from edge.config import _Loader, schema
    from tests.config.schema_check import KEYWORDS, errors, keywords

    out = schema()
    assert keywords(out) <= KEYWORDS, f"the check does not know {keywords(out) - KEYWORDS}"
    files = _shipped_configs()
    assert len(files) >= 7
    for path in files:
        data = yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 (a SafeLoader)
        assert errors(data, out, out) == [], path.relative_to(ROOT)


def test_the_json_schema_refuses_what_the_loader_refuses():
    from edge.config import schema
    from tests.config.schema_check import errors

    out = schema()
    bad = {"appliance_id": "a", "spool": {"when_full": "sometimes", "colour": "red"}, "zerobus": {"streams": "four"},
           "admin": {"secure_cookies": "yes please"}, "sources": [{"name": "m", "type": "mqtt", "rate": 5}]}
    found = errors(bad, out, out)
    for where in ("$.spool.when_full", "$.spool.colour", "$.zerobus.streams", "$.admin.secure_cookies", "$.sources[0]"):
        assert any(e.startswith(where + ":") for e in found), (where, found)
    assert errors({"spool": {}}, out, out) == ["$.appliance_id: required"]
    good = {"appliance_id": "${ID}", "zerobus": {"streams": "${N:-2}", "client_secret": "${S}"},
            "spool": {"max_age": "${AGE:-7d}", "when_full": "${WHEN_FULL:-block}"}}
    assert errors(good, out, out) == []


def test_the_admin_section_loads_when_the_other_services_variables_are_unset(tmp_path):
    """The admin container is not given ZEROBUS_ENDPOINT, ZEROBUS_TABLE, ... (docker-compose.production.yml
    sets them for the edge only): those fields keep their defaults there instead of failing as ''."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "appliance_id": "a",
        "zerobus": {"endpoint": "${ZEROBUS_ENDPOINT}", "table": "${ZEROBUS_TABLE}", "streams": "${ZB_STREAMS}",
                    "client_id": "id-${DATABRICKS_CLIENT_ID}", "client_secret": "${DATABRICKS_CLIENT_SECRET}"},
        "sources": [{"name": "gw", "type": "http", "token": "${IGNITION_TOKEN}", "listen": "${GW_LISTEN}"}],
        "admin": {"password": "${EDGE_ADMIN_PASSWORD}"},
    }))
    cfg = load(path, {"EDGE_ADMIN_PASSWORD": "admin-password-1"}, section="admin")
    assert (cfg.zerobus.endpoint, cfg.zerobus.table, cfg.zerobus.streams) == ("http://127.0.0.1:50051",
                                                                            "main.edge.readings", 4)
    assert cfg.zerobus.client_id == "id-" and cfg.sources[0].listen == "0.0.0.0:8088"
    with pytest.raises(ConfigError, match="EDGE_ADMIN_PASSWORD is not set"):
        load(path, {}, section="admin")  # its own section's variables are still required
    with pytest.raises(ConfigError, match="(GW_LISTEN|ZEROBUS_ENDPOINT) is not set"):
        load(path, {"EDGE_ADMIN_PASSWORD": "admin-password-1"})  # and every one for the whole config
