"""The Compose files, the appliance config they mount and .env.example agree (no Docker needed)."""

from __future__ import annotations

import re

import yaml

from edge.config import load
from ops.composectl import ROOT

FILES = ["docker-compose.yml", "docker-compose.test.yml", "docker-compose.production.yml"]
VAR = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)")
# Set by the test harness or the shell, not by an operator's .env.
NOT_OPERATOR_VARS = {"HTTPS_PROXY"}


def compose(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def test_every_variable_the_stack_reads_is_documented_in_env_example():
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M))
    used = set()
    for name in [*FILES, "ops/compose/edge.yaml"]:
        used |= set(VAR.findall((ROOT / name).read_text()))
    missing = sorted(used - documented - NOT_OPERATOR_VARS)
    assert not missing, f"add to .env.example: {missing}"


def test_env_example_ships_no_secret_values():
    for line in (ROOT / ".env.example").read_text().splitlines():
        m = re.match(r"^([A-Z0-9_]*(SECRET|TOKEN)[A-Z0-9_]*)=(.*)$", line)
        assert not m or m.group(3).strip() in ("", "<service principal OAuth secret>"), line


def test_files_are_what_compose_1_29_and_2_both_accept():
    for name in FILES:
        doc = compose(name)
        assert "version" not in doc and "name" not in doc, name  # v1 rejects name:, v2 warns on version:
    base = compose("docker-compose.yml")["services"]
    for name in FILES[1:]:
        assert set(compose(name)["services"]) <= set(base), f"{name} names a service the stack lacks"


def test_the_dmz_shape_of_the_stack():
    doc = compose("docker-compose.yml")
    services, networks = doc["services"], doc["networks"]
    assert networks["ot"].get("internal") is True and not networks["egress"].get("internal")
    published = {name for name, svc in services.items() if svc.get("ports")}
    assert published == {"admin", "zerobus"}  # the management page, and the demo sink's /stats
    assert all(p.startswith("${ADMIN_BIND:-127.0.0.1}:") for p in services["admin"]["ports"])
    assert all(p.startswith("127.0.0.1:") for p in services["zerobus"]["ports"])
    net = lambda s: set(services[s]["networks"])  # noqa: E731
    assert net("edge") == {"ot", "egress"} and net("zerobus") == {"egress"} and net("admin") == {"mgmt"}
    for sim in ("sim-opcua", "sim-modbus", "sim-mqtt", "mosquitto"):
        assert net(sim) == {"ot"}, sim
    # One writer: only the edge runs `edge run`; admin and edge share the spool volume.
    assert services["edge"]["command"][:2] == ["edge", "run"]
    assert "spool:/data" in services["edge"]["volumes"] and "spool:/data" in services["admin"]["volumes"]
    for name, svc in services.items():
        assert svc.get("read_only") is True, name
        assert svc.get("restart") == ("no" if name == "init" else "unless-stopped"), name
    # First-start credentials: a one-shot with no network; everyone who logs in waits for it.
    assert services["init"]["network_mode"] == "none"
    assert services["init"]["command"][:2] == ["edge", "init-secrets"]
    for name in ("mosquitto", "edge", "admin", "zerobus"):
        assert services[name]["depends_on"]["init"]["condition"] == "service_completed_successfully", name


def test_the_compose_config_of_the_appliance_validates():
    env = {"MQTT_PASSWORD_EDGE": "x" * 12}
    cfg = load(ROOT / "ops/compose/edge.yaml", env=env)
    assert cfg.spool.path.startswith("/data/")  # the `spool` volume
    assert {s.name for s in cfg.sources} == {"demo", "opcua", "modbus", "mqtt"}
    assert cfg.zerobus.endpoint == "https://zerobus"  # TLS on 443, as the real endpoint
