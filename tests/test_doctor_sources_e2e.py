"""Source checks requested from the admin page are run by the real appliance (`edge run`) against a real
Mosquitto, stored as state ``source_checks/last`` and shown by /sources/checks and /api/source-checks."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys

import pytest

from edge.admin import create_app
from edge.config import parse
from edge.control import commands, sourcereport
from edge.spool import SpoolReader
from simulators.kit.broker import free_port
from simulators.kit import procs
from simulators.kit.edgeproc import ROOT, EdgeRun
from simulators.kit.wait import wait_until
from tests.admin.conftest import ENV, PASSWORDS, login
from tests.mqtt.conftest import broker  # noqa: F401 - the shipped Mosquitto config on a free port
from tests.test_doctor_sources import publish_retained
from tests.test_operator_requests import wait_done

pytestmark = pytest.mark.timeout(180)

TOKEN = "gw-token-never-stored-7c1e2d9a"


def basic(role: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{role}:{PASSWORDS[role]}".encode()).decode()}


def opcua_simulator(tmp_path, port: int, user: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "simulators.opcua", "--port", str(port), "--nodes", "10",
                             "--rate", "10", "--security", "all", "--cert-dir", str(tmp_path / "server-pki"),
                             "--user", user, "--no-faults"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except OSError:
            return False
        return True

    wait_until(listening, 30, "the OPC-UA simulator listening")
    return proc


def test_source_checks_requested_from_the_page_run_on_the_appliance(tmp_path, broker):
    secret = broker.password("edge")
    opc_port, opc_secret = free_port(), "opc-pw-never-stored-5b"
    publish_retained(broker, "plant/sim1/line1/temp", b'{"v": 2}')
    wrong = "wrong-" + secret
    gw_port = free_port()
    cfg = {"appliance_id": "plant-sources", "admin": {"secure_cookies": False}, "sources": [
        {"name": "line", "type": "mqtt", "url": f"mqtt://127.0.0.1:{broker.port}", "username": "edge",
         "password": secret, "subscriptions": [{"topic": "plant/#", "qos": 1}]},
        {"name": "wrongpw", "type": "mqtt", "url": f"mqtt://127.0.0.1:{broker.port}", "username": "edge",
         "password": wrong, "client_id": "edge-wrongpw", "subscriptions": [{"topic": "plant/#", "qos": 1}]},
        {"name": "gw", "type": "http", "listen": f"127.0.0.1:{gw_port}", "token": TOKEN},
        {"name": "plc", "type": "opcua", "endpoint": f"opc.tcp://127.0.0.1:{opc_port}/sim", "username": "op",
         "password": opc_secret, "groups": [{"name": "g", "nodes": ["ns=2;s=line1.press1.temperature"]}]},
    ]}
    sim = opcua_simulator(tmp_path, opc_port, f"op:{opc_secret}")
    edge = None
    try:
        edge = EdgeRun(tmp_path, cfg, forward=False).start()
        app = create_app(parse(edge.config, env={}), env=ENV)
        client = app.test_client()
        assert client.get("/api/source-checks", headers=basic("viewer")).json["last"] is None
        assert client.post("/api/actions/run_source_checks", headers=basic("viewer"), json={}).status_code == 403
        r = client.post("/api/actions/run_source_checks", headers=basic("operator"), json={})
        assert r.status_code == 202, r.json
        directory = tmp_path / "data" / "admin-commands"
        done = wait_done(directory, r.json["id"], 90)
        with SpoolReader(edge.spool_path) as reader:
            stored = {x["name"]: x["value"] for x in reader.states(sourcereport.KIND)}[sourcereport.NAME]
        doc = client.get("/api/source-checks", headers=basic("viewer")).json
        page = login(app.test_client(), "viewer").get("/sources/checks").get_data(as_text=True)
        recent = commands.recent(directory)
        log = (tmp_path / "edge.log").read_text()
        with SpoolReader(edge.spool_path) as reader:
            line_state = {x["name"]: x["value"] for x in reader.states("source")}["line"]
    finally:
        if edge is not None:
            edge.stop()
        procs.stop(sim, 10)

    rows = {(c["source"], c["name"]): c for c in stored["checks"]}
    assert done["status"] == "done" and "wrongpw login" in done["detail"], done
    assert {n: c["status"] for (s, n), c in rows.items() if s == "line"} == {
        "reach": "PASS", "tls": "WARN", "login": "PASS", "subscribe": "PASS", "message": "PASS"}
    assert rows["wrongpw", "login"]["status"] == "FAIL"
    assert "check wrongpw.username / password" in rows["wrongpw", "login"]["hint"]
    # The appliance's own http source holds its port: the check asks it, and it answers.
    assert rows["gw", "listen"]["status"] == "PASS" and "the appliance's http source answers" in rows["gw", "listen"]["detail"]
    # The OPC-UA probe runs beside the appliance's own OPC-UA session, in the same process.
    assert {n: c["status"] for (s, n), c in rows.items() if s == "plc"} == {
        "reach": "PASS", "endpoint": "PASS", "security": "WARN", "trust": "PASS", "login": "PASS", "read": "PASS"}
    assert stored["ok"] is False and stored["counts"]["FAIL"] == 1
    assert doc["last"]["ok"] is False and len(doc["last"]["checks"]) == len(stored["checks"])
    assert doc["pending"] is False and doc["requests"][0]["status"] == "done"
    assert "Hint:" in page and "check wrongpw.username / password" in page and "wrongpw" in page
    # The probe connected as a client of its own: the collector's persistent session was never taken over.
    assert "doctor-" in broker.log and "already connected" not in broker.log
    assert line_state["state"] in ("connected", "running") and line_state["reconnects_total"] == 0, line_state
    for text in (json.dumps(done), json.dumps(stored), json.dumps(doc), page, json.dumps(recent), log):
        assert secret not in text and wrong not in text and TOKEN not in text and opc_secret not in text


def test_a_second_request_while_one_waits_is_refused(tmp_path):
    app = create_app(parse({"appliance_id": "plant-sources", "data_dir": str(tmp_path / "data"),
                            "spool": {"path": str(tmp_path / "spool.db")}, "sources": []}, env={}), env=ENV)
    client = app.test_client()
    assert client.post("/api/actions/run_source_checks", headers=basic("operator"), json={}).status_code == 202
    again = client.post("/api/actions/run_source_checks", headers=basic("operator"), json={})
    assert again.status_code == 409 and "source check run is already requested" in again.json["error"]
    assert client.get("/api/source-checks", headers=basic("viewer")).json["pending"] is True
