"""The appliance as users run it: `compose up`, data reaches the emulator, the DMZ holds.

Runs for real against the local Docker Engine (see conftest.py). Prints the time
from `compose up` to the first reading in the emulator (target < 60 s).
"""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.request
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from ops.composectl import Compose, Emulator, docker, emulator_rows, http_json, wait_for

from edge.firststart import SHARES

from .conftest import APPLIANCE_ID, ENV_FILE, FILES, figure

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SOURCES = {"demo", "opcua", "modbus", "mqtt"}  # ops/compose/edge.yaml


def emulator(stack) -> Emulator:
    return wait_for(lambda: Emulator.of(stack), timeout=60, what="the emulator's port and CA")


def test_compose_1_29_smoke_emulator_starts_read_only_and_answers_stats(stack_v1):
    stack = stack_v1
    assert stack.tool == ("docker-compose",)
    stack.up("zerobus")
    stack.wait_healthy(["zerobus"], timeout=90)
    sink = emulator(stack)
    stats = wait_for(sink.stats, timeout=30, what="GET /stats")
    assert "tables" in stats
    assert emulator_rows(stats) == 0
    cid = stack.container("zerobus")
    # The image's non-root user, and a root filesystem nothing can write to.
    assert stack.exec("zerobus", "id", "-u").stdout.strip() == "10001"
    probe = stack.exec("zerobus", "touch", "/opt/venv/probe", check=False)
    assert probe.returncode != 0 and "Read-only file system" in probe.stderr + probe.stdout
    assert docker("inspect", "-f", "{{.HostConfig.ReadonlyRootfs}}", cid).stdout.strip() == "true"


def sources_landed(stack, from_seq: int) -> set[str]:
    """Source names of the rows the emulator stored from from_seq on (its own query tool)."""
    out = stack.exec("zerobus", "python", "-m", "simulators.zerobus", "query", "--data-dir", "/data",
                     "--ddl", "/opt/zerobus-edge/proto/readings.sql", "--appliance-id", APPLIANCE_ID,
                     "--from-seq", str(from_seq), "--limit", "20000", timeout=60).stdout
    return {json.loads(line).get("source") for line in out.splitlines() if line.strip()}


def test_compose_up_whole_appliance_every_source_reaches_the_emulator(stack):
    t0 = time.monotonic()
    stack.up()  # everything, as `docker compose up` does
    sink = emulator(stack)
    wait_for(lambda: emulator_rows(sink.stats(), APPLIANCE_ID) > 0,
             timeout=120, interval=0.25, what="first reading in the emulator")
    elapsed = time.monotonic() - t0
    figure(f"whole appliance: compose up -> first reading in the emulator: {elapsed:.1f}s "
           f"(target < 60 s: {'met' if elapsed < 60 else 'MISSED'})")

    # Every protocol makes it through broker/simulator -> edge -> spool -> forwarder -> emulator.
    seen: set[str] = set()

    def all_sources():
        app = sink.stats()["tables"]["main.edge.readings"]["appliances"][APPLIANCE_ID]
        # The newest rows only: the query tool returns at most --limit rows.
        seen.update(sources_landed(stack, max(int(app["min_seq"]), int(app["max_seq"]) - 5000)))
        return SOURCES <= seen

    try:
        wait_for(all_sources, timeout=150, interval=3, what="a reading from every source")
    except TimeoutError:
        pytest.fail(f"sources seen in the emulator: {sorted(seen)}; expected {sorted(SOURCES)}")
    figure(f"whole appliance: compose up -> a reading from every source: {time.monotonic() - t0:.1f}s")

    stats = sink.stats()
    app = stats["tables"]["main.edge.readings"]["appliances"][APPLIANCE_ID]
    assert app["unexplained_missing_count"] == 0, app

    # Readiness is real: broker CONNECT with auth, the edge's healthcheck, the admin page's /readyz.
    stack.wait_healthy(["mosquitto", "edge", "admin", "sim-opcua", "sim-modbus"], timeout=90)
    spool = json.loads(stack.exec("edge", "edge", "spool", "stats", "--config", "/etc/edge/config.yaml").stdout)
    assert isinstance(spool, dict) and spool, spool
    admin_host, admin_port = stack.port("admin", 8080)
    assert admin_host == "127.0.0.1"  # the default binds the management port to loopback only
    wait_for(lambda: http_json(f"http://{admin_host}:{admin_port}/readyz") is not None, timeout=30, what="admin /readyz")

    # No .env passwords: the init service generated them; the README says how to read the admin one.
    password = stack.exec("admin", "cat", "/secrets/admin_password").stdout.strip()
    assert len(password) >= 20
    auth = "Basic " + base64.b64encode(f"admin:{password}".encode()).decode()
    req = urllib.request.Request(f"http://{admin_host}:{admin_port}/api/status", headers={"Authorization": auth})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200 and json.loads(resp.read())
    wrong = urllib.request.Request(f"http://{admin_host}:{admin_port}/api/status",
                                   headers={"Authorization": "Basic " + base64.b64encode(b"admin:guess").decode()})
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(wrong, timeout=10)
    assert denied.value.code == 401
    assert password not in stack.logs(tail=2000)  # generated, never printed

    # Each service holds only its own secrets: the edge (which parses OT input) cannot
    # read the admin password anywhere it can see, nor the page's sessions.
    assert set(stack.exec("edge", "ls", "/secrets").stdout.split()) == set(SHARES["edge"])
    found = stack.exec("edge", "grep", "-rqsF", "--", password, "/secrets", "/data", "/etc/edge", check=False)
    assert found.returncode == 1, "the edge container can read the admin password"
    assert stack.exec("admin", "ls", "/var/lib/edge/admin-state").stdout.split(), "the admin's sessions went elsewhere"
    assert stack.exec("edge", "ls", "/data").stdout.split().count("admin-state") == 0
    # ...and the emulator's private key is only in the emulator.
    assert stack.exec("edge", "test", "-e", "/secrets/zerobus-server.key", check=False).returncode == 1


def test_dmz_networks_isolate_the_ot_side(stack):
    """ot is internal: a device on it reaches the edge but neither the sink nor the outside."""
    t0 = time.monotonic()
    stack.up("zerobus", "edge")
    sink = emulator(stack)
    wait_for(lambda: emulator_rows(sink.stats(), APPLIANCE_ID) > 0,
             timeout=120, interval=0.25, what="first reading in the emulator")
    figure(f"emulator + edge alone: compose up -> first reading in the emulator: {time.monotonic() - t0:.1f}s")
    stack.wait_healthy(["zerobus"], timeout=90)
    image = docker("inspect", "-f", "{{.Config.Image}}", stack.container("edge")).stdout.strip()
    probe = ("import socket, sys\n"
             "try:\n socket.create_connection((sys.argv[1], int(sys.argv[2])), 3)\n"
             "except OSError as e:\n print('refused:', e); sys.exit(3)\n")

    def try_from(network: str, host: str, port: int) -> int:
        return docker("run", "--rm", "--network", stack.network(network), "--entrypoint", "python", image,
                      "-c", probe, host, str(port), timeout=60, check=False).returncode

    # Two throwaway containers at once (each `docker run` is seconds of container setup).
    with ThreadPoolExecutor(2) as pool:
        egress, ot = pool.map(lambda net: try_from(net, "zerobus", 443), ("egress", "ot"))
    assert egress == 0  # the edge's way out works...
    assert ot == 3  # ...but the OT side cannot see the sink
    # ...nor anything beyond the host: Docker gives an internal network no route out.
    assert docker("network", "inspect", "-f", "{{.Internal}}", stack.network("ot")).stdout.strip() == "true"
    assert docker("network", "inspect", "-f", "{{.Internal}}", stack.network("egress")).stdout.strip() == "false"


def test_production_override_drops_the_demo_world(compose_tool):
    prod = Compose("zbeprodconfig", ["docker-compose.yml", "docker-compose.production.yml"], env_file=ENV_FILE)
    missing = prod.run("config", check=False)
    # Which missing variable is named first differs between Compose versions: any of the required ones.
    assert missing.returncode != 0 and re.search(r"set (ZEROBUS_ENDPOINT|DATABRICKS_\w+|EDGE_CONFIG_FILE) in \.env",
                                                 missing.stderr + missing.stdout)
    prod.env.update(ZEROBUS_ENDPOINT="https://1234.zerobus.example.invalid", DATABRICKS_HOST="https://ws.example.invalid",
                    DATABRICKS_CLIENT_ID="sp", DATABRICKS_CLIENT_SECRET="s3cret-value", EDGE_CONFIG_FILE="./ops/compose/edge.yaml")
    import yaml

    # Compose v2 renders only the services of the active profiles.
    services = yaml.safe_load(prod.run("config").stdout)["services"]
    assert set(services) == {"init", "mosquitto", "edge", "admin"}
    services = yaml.safe_load(prod.run("--profile", "demo", "config").stdout)["services"]
    demo = {name for name, svc in services.items() if "demo" in (svc.get("profiles") or [])}
    assert demo == {"zerobus", "sim-opcua", "sim-modbus", "sim-mqtt"}
    assert services["edge"]["environment"]["ZEROBUS_ENDPOINT"].startswith("https://")
    # No demo CA in production: the edge trusts the system CAs, and init makes no emulator certificate.
    assert services["edge"]["environment"]["SSL_CERT_FILE"] == "/etc/ssl/certs/ca-certificates.crt"
    assert services["init"]["environment"]["EDGE_DEMO_TLS_HOSTNAMES"] == ""


def test_rendered_config_mounts_each_service_only_the_secrets_it_needs(compose_tool):
    """`docker compose config`: the whole `secrets` volume is the init service's alone."""
    import yaml

    cfg = yaml.safe_load(Compose("zbesecretsconfig", FILES, env_file=ENV_FILE, tool=compose_tool).run("config").stdout)

    def secret_mounts(name: str) -> dict[str, str]:
        return {v["source"]: v["target"] for v in cfg["services"][name].get("volumes", [])
                if v.get("type") == "volume" and v["source"].startswith("secrets")}

    expected = {"mosquitto": "secrets-broker", "edge": "secrets-edge", "admin": "secrets-admin",
                "sim-mqtt": "secrets-sim", "zerobus": "secrets-zerobus", "sim-opcua": None, "sim-modbus": None}
    for service, volume in expected.items():
        assert list(secret_mounts(service)) == ([volume] if volume else []), service
    for service in expected:
        assert all(v["read_only"] for v in cfg["services"][service].get("volumes", [])
                   if v.get("source", "").startswith("secrets")), service
    # The init service fills each service's volume from the share edge/firststart.py names.
    init = secret_mounts("init")
    assert init.pop("secrets") == "/secrets"
    share_of = {"secrets-broker": "broker", "secrets-edge": "edge", "secrets-admin": "admin",
                "secrets-sim": "sim-mqtt", "secrets-zerobus": "zerobus"}
    assert init == {vol: f"/shares/{share_of[vol]}" for vol in share_of} and set(share_of.values()) == set(SHARES)
    assert "admin_password" not in SHARES["edge"] and not any("password" in f for f in SHARES["zerobus"])
    # The admin page keeps its sessions in a volume of its own, not in the spool volume the edge reads.
    assert cfg["services"]["admin"]["environment"]["EDGE_ADMIN_STATE_DIR"] == "/var/lib/edge/admin-state"
    mounts = lambda s: {v.get("source") for v in cfg["services"][s].get("volumes", [])}  # noqa: E731
    assert "admin-state" in mounts("admin") and "admin-state" not in mounts("edge")
    # The edge trusts the emulator through its CA bundle, as it would a TLS-inspecting proxy.
    edge_env = cfg["services"]["edge"]["environment"]
    assert edge_env["SSL_CERT_FILE"] == "/secrets/ca-bundle.pem" and edge_env["ZEROBUS_ENDPOINT"] == "https://zerobus"
