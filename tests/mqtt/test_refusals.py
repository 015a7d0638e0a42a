"""What a broker refuses shows on the admin page: a wrong password (auth_failed) and a
subscription its ACL denies (subscribe_failed). Real Mosquitto, the real spool writer, and the
admin page's own reading and view model over the spool's state table."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import time

import paho.mqtt.client as mqtt
import pytest

from edge.admin import model, reading
from simulators.kit.broker import Broker
from simulators.kit.mqtt import InProcessEdge, edge_config, wait_until


def _page(edge: InProcessEdge) -> dict:
    """The admin page's document, from what the spool holds (as the page reads it)."""
    snap = reading.read(edge.spool_path)
    assert snap.error is None, snap.error
    return model.status(appliance_id="edge-test", stats=snap.stats, states_by_kind=snap.states, samples=[],
                        version="test", started=time.time())


def _uplink_streaming(edge: InProcessEdge) -> None:
    """The forwarder's record as a healthy uplink writes it: the page would say Delivering."""
    now = time.time()
    edge.writer.put_state("forwarder", "main", {"state": "streaming", "reason": "", "since": now, "updated_ts": now,
                                                "egress_cuts": []}).result(10)


def test_a_refused_password_is_bad_on_the_admin_page_not_delivering(broker, tmp_path):
    edge = InProcessEdge(edge_config(tmp_path, broker))
    try:
        edge.wait_state("connected")
        _uplink_streaming(edge)
        wait_until(lambda: _page(edge)["sources"][0]["state"] == "connected", 10, "connected on the page")
        assert _page(edge)["overall"]["headline"] == "Delivering"
    finally:
        edge.stop()
    edge = InProcessEdge(edge_config(tmp_path, broker, password="not-the-password", auth_backoff=60))
    try:
        edge.wait_state("auth_failed")
        page = wait_until(lambda: (p := _page(edge)) and p["sources"][0]["state"] == "auth_failed" and p, 10,
                          "auth_failed in the spool's state table")
        row = page["sources"][0]
        assert row["severity"] == "bad" and "edge" in row["detail"]
        assert page["overall"]["headline"] != "Delivering" and page["overall"]["severity"] != "ok"
        assert "mqtt1" in page["overall"]["detail"]
        assert "not-the-password" not in json.dumps(page)
    finally:
        edge.stop()


DYNSEC = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"


def _client(broker: Broker, user: str, acls: list[tuple[str, str]]) -> dict:
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", broker.password(user).encode(), salt, 101, 64)
    return {"username": user, "password": base64.b64encode(digest).decode(), "salt": base64.b64encode(salt).decode(),
            "iterations": 101, "roles": [{"rolename": user}],
            "_acls": [{"acltype": t, "topic": topic, "allow": True} for t, topic in acls]}


@pytest.fixture
def acl_broker():
    """Mosquitto with an ACL that lets user edge subscribe to plant/# only (our own, not the shipped one).

    Mosquitto 2.0's acl_file grants every SUBSCRIBE and only filters what it delivers, so a
    broker that refuses subscriptions uses the dynamic security plugin (its subscribe ACLs
    answer a denied filter with reason code 0x80 / 0x87 in the SUBACK).
    """
    b = Broker()
    clients = [_client(b, "edge", [("subscribePattern", "plant/#"), ("publishClientReceive", "plant/#")]),
               _client(b, "sim1", [("publishClientSend", "plant/sim1/#")])]
    roles = [{"rolename": c["username"], "acls": c.pop("_acls")} for c in clients]
    dynsec = b.dir / "data" / "run" / "dynsec.json"
    dynsec.write_text(json.dumps({"clients": clients, "roles": roles, "groups": [], "defaultACLAccess": {
        "publishClientSend": False, "publishClientReceive": False, "subscribe": False, "unsubscribe": True}}))
    shutil.chown(dynsec, "mosquitto", "mosquitto")
    conf = [ln for ln in b.conf.read_text().splitlines() if not ln.startswith(("password_file ", "acl_file "))]
    b.conf.write_text("\n".join(conf + [f"plugin {DYNSEC}", f"plugin_opt_config_file {dynsec}", ""]))
    b.start()
    try:
        yield b
    finally:
        b.cleanup()


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_a_subscription_the_acl_refuses_is_subscribe_failed_and_the_rest_flows(acl_broker, tmp_path, protocol):
    edge = InProcessEdge(edge_config(tmp_path, acl_broker, protocol=protocol))  # plant/# and spBv1.0/#
    try:
        st = edge.wait_state("subscribe_failed")
        assert "spBv1.0/#" in st["detail"] and "plant/#" not in st["detail"].split("(check")[0]
        assert "ACL" in st["detail"] and st["errors_total"] >= 1
        page = wait_until(lambda: (p := _page(edge)) and p["sources"] and p["sources"][0]["state"] == "subscribe_failed"
                          and p, 20, "subscribe_failed on the page")
        assert page["sources"][0]["severity"] == "bad"
        # The granted filter keeps delivering.
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-sim1")
        c.username_pw_set("sim1", acl_broker.password("sim1"))
        c.connect("127.0.0.1", acl_broker.port)
        c.loop_start()
        try:
            c.publish("plant/sim1/x", json.dumps({"value": 1, "ts": 1764000000000}), qos=1).wait_for_publish(10)
            wait_until(lambda: edge.source.counts["acked"] >= 1, 10, "the granted subscription's message")
        finally:
            c.loop_stop()
        assert edge.state()["state"] == "subscribe_failed"  # still shown while connected
    finally:
        edge.stop()


def test_a_peer_that_never_answers_connect_is_connect_failed_not_connecting_for_ever(broker, tmp_path):
    import socket

    with socket.socket() as silent:  # accepts TCP (the kernel's backlog), never speaks MQTT
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        edge = InProcessEdge(edge_config(tmp_path, broker, url=f"mqtt://127.0.0.1:{port}", connect_timeout=1))
        try:
            st = edge.wait_state("connect_failed", 15)
            assert "no CONNACK" in st["detail"] and str(port) in st["detail"]
        finally:
            edge.stop()
