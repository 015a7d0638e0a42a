"""Config validation: wrong input exits non-zero naming the field; secrets never shown."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edge.config import load, parse
from edge.configtypes import ConfigError, parse_duration, parse_size

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "ops" / "config" / "example.yaml"


def err(data, env=None) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        parse(data, env or {})
    return e.value


EXAMPLE_ENV = {"IGNITION_TOKEN": "example-token-0123456789"}


def test_example_config_parses(caplog):
    with caplog.at_level("WARNING", logger="edge.config"):
        cfg = load(EXAMPLE, env=EXAMPLE_ENV)
    assert not caplog.records, "the reference config uses a deprecated key"
    assert cfg.appliance_id == "plant-a-dmz-1"
    assert cfg.spool.max_bytes == 10 * 1024**3
    assert cfg.spool.max_age == 30 * 86400
    assert cfg.zerobus.batch_max_bytes == 4 * 1024**2
    assert cfg.sources[0].rate == 100
    assert {s.type for s in cfg.sources} == {"synthetic", "opcua", "modbus", "mqtt", "http"}  # one of each


@pytest.mark.parametrize(
    "data, path",
    [
        ({}, "appliance_id"),
        ({"appliance_id": "a b"}, "appliance_id"),
        ({"appliance_id": "a", "spool": {"when_full": "explode"}}, "spool.when_full"),
        ({"appliance_id": "a", "spool": {"max_bytes": "lots"}}, "spool.max_bytes"),
        ({"appliance_id": "a", "spool": {"max_bytes": 10}}, "spool.max_bytes"),
        ({"appliance_id": "a", "spool": {"colour": "red"}}, "spool.colour"),
        ({"appliance_id": "a", "zerobus": {"batch_max_records": "many"}}, "zerobus.batch_max_records"),
        ({"appliance_id": "a", "zerobus": {"batch_max_bytes": "20MB"}}, "zerobus.batch_max_bytes"),
        ({"appliance_id": "a", "zerobus": {"table": "readings"}}, "zerobus.table"),
        ({"appliance_id": "a", "zerobus": {"endpoint": "grpc://x"}}, "zerobus.endpoint"),
        ({"appliance_id": "a", "zerobus": {"ack_timeout": "soon"}}, "zerobus.ack_timeout"),
        ({"appliance_id": "a", "sources": {"name": "x"}}, "sources"),
        ({"appliance_id": "a", "sources": [{"name": "x", "type": "telepathy"}]}, "sources[0].type"),
        ({"appliance_id": "a", "sources": [{"name": "x", "type": "synthetic", "rate": -1}]}, "sources[0].rate"),
        ({"appliance_id": "a", "sources": [{"name": "x", "type": "synthetic", "rat": 1}]}, "sources[0].rat"),
        ({"appliance_id": "a", "sources": [{"type": "synthetic"}]}, "sources[0].name"),
        ({"appliance_id": "a", "sources": [{"name": "x", "type": "synthetic"}] * 2}, "sources[1].name"),
        ({"appliance_id": "a", "logging": {"level": "loud"}}, "logging.level"),
    ],
)
def test_errors_name_the_field(data, path):
    assert err(data).path == path


def test_env_interpolation_types_and_defaults():
    cfg = parse(
        {"appliance_id": "${APP}", "zerobus": {"batch_max_records": "${N}", "client_secret": "${S}", "table": "${T:-c.s.t}"}},
        {"APP": "plant-9", "N": "250", "S": "hunter2"},
    )
    assert cfg.appliance_id == "plant-9"
    assert cfg.zerobus.batch_max_records == 250
    assert cfg.zerobus.table == "c.s.t"
    assert cfg.zerobus.client_secret == "hunter2"
    assert "hunter2" not in repr(cfg)


def test_secret_from_file(tmp_path):
    (tmp_path / "s").write_text("from-a-docker-secret\n")
    cfg = parse({"appliance_id": "a", "zerobus": {"client_secret": "${S}"}}, {"S_FILE": str(tmp_path / "s")})
    assert cfg.zerobus.client_secret == "from-a-docker-secret"


def test_missing_env_names_variable_and_field_but_no_value():
    e = err({"appliance_id": "a", "zerobus": {"client_secret": "${DATABRICKS_CLIENT_SECRET}"}})
    assert e.path == "zerobus.client_secret" and "DATABRICKS_CLIENT_SECRET" in str(e)


def test_wrong_type_for_a_secret_does_not_echo_it():
    e = err({"appliance_id": "a", "zerobus": {"client_secret": ["s3cr3t-value"]}})
    assert "s3cr3t-value" not in str(e)


def test_units():
    assert parse_size("512MiB") == 512 * 1024**2
    assert parse_size("10 GB") == 10 * 1000**3
    assert parse_size(4096) == 4096
    assert parse_duration("250ms") == 0.25
    assert parse_duration("2h") == 7200
    assert parse_duration(3) == 3.0
    for bad in ("-1", "1 parsec", True, None):
        with pytest.raises(ConfigError):
            parse_size(bad)
        with pytest.raises(ConfigError):
            parse_duration(bad)


def test_trailing_slash_removed_from_workspace_url():
    cfg = parse({"appliance_id": "a", "zerobus": {"workspace_url": "https://x.cloud.databricks.com/"}}, {})
    assert cfg.zerobus.workspace_url == "https://x.cloud.databricks.com"


def _edge(*args, env=None):
    return subprocess.run([sys.executable, "-m", "edge.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=60)


def test_cli_check_config_ok():
    import os

    r = _edge("check-config", "--config", str(EXAMPLE), env={**os.environ, **EXAMPLE_ENV})
    assert r.returncode == 0, r.stderr
    assert "plant-a-dmz-1" in r.stdout


def test_cli_check_config_exits_2_naming_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"appliance_id": "a", "spool": {"when_full": "sometimes"}}))
    r = _edge("check-config", "--config", str(bad))
    assert r.returncode == 2
    assert "spool.when_full" in r.stderr


def test_cli_check_config_invalid_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("appliance_id: [unclosed\n")
    r = _edge("check-config", "--config", str(bad))
    assert r.returncode == 2 and "not valid YAML" in r.stderr


def test_cli_table_ddl():
    r = _edge("table", "ddl", "--table", "cat.sch.tbl")
    assert r.returncode == 0
    assert "CREATE TABLE IF NOT EXISTS cat.sch.tbl" in r.stdout


def test_every_subcommand_has_help():
    for args in (["run"], ["check-config"], ["config", "schema"], ["spool", "stats"], ["healthcheck"], ["admin"],
                 ["table", "ddl"]):
        r = _edge(*args, "--help")
        assert r.returncode == 0 and "usage:" in r.stdout


def test_admin_section_only_needs_its_own_secrets():
    data = {"appliance_id": "a", "zerobus": {"client_secret": "${DATABRICKS_CLIENT_SECRET}"},
            "sources": [{"name": "gw", "type": "http", "token": "${GW_TOKEN:-0123456789abcdef0}"}]}
    with pytest.raises(ConfigError):
        parse(data, {})
    cfg = parse(data, {}, section="admin")
    assert cfg.zerobus.client_secret == ""


def test_empty_variable_falls_back_to_its_file(tmp_path):
    (tmp_path / "p").write_text("generated-at-first-start\n")
    data = {"appliance_id": "a", "zerobus": {"client_secret": "${S}"}}
    assert parse(data, {"S": "", "S_FILE": str(tmp_path / "p")}).zerobus.client_secret == "generated-at-first-start"
    assert parse(data, {"S": "given", "S_FILE": str(tmp_path / "p")}).zerobus.client_secret == "given"
    assert parse(data, {"S": ""}).zerobus.client_secret == ""


def test_the_example_names_every_spool_and_zerobus_key_with_the_schema_default():
    """ops/config/example.yaml is where the spool and zerobus keys are documented (the README points to it):
    each is there, set or commented out, and a literal ``(default X)`` it states is the schema's default.
    ``max_inflight_bytes`` and ``warehouse_id`` were missing."""
    import dataclasses
    import re

    from pydantic import TypeAdapter

    from edge.config import SpoolConfig, ZerobusConfig
    from edge.configtypes import fields_of

    text = EXAMPLE.read_text()
    compared = 0
    for section, cls in (("spool", SpoolConfig), ("zerobus", ZerobusConfig)):
        block = re.search(rf"^{section}:\n((?:[ \t].*\n)*)", text, re.M).group(1)
        lines = dict(re.findall(r"^\s+#?\s*([a-z_]+):(.*)$", block, re.M))
        fields = {f.name: f.default for f in dataclasses.fields(cls)}
        assert set(lines) == set(fields), (section, set(fields) ^ set(lines))
        for key, rest in lines.items():
            stated = re.search(r"\(default ([^),;:]+)", rest)
            if stated is None:
                continue
            cell = stated.group(1).strip()
            try:
                value = None if cell == "none" else TypeAdapter(fields_of(cls)[key]).validate_python(cell)
            except ValueError:
                assert fields[key] is None, f"{section}.{key}: {cell!r} is not a value"  # worked out: max_bytes/8
                continue
            assert value == fields[key], f"{section}.{key} documented as {cell!r}, schema says {fields[key]!r}"
            compared += 1
    assert compared >= 4
