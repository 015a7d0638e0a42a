"""What a broker refuses shows on the admin page: a wrong password (auth_failed) and a
subscription its ACL denies (subscribe_failed). Real Mosquitto, the real spool writer, and the
admin page's own reading and view model over the spool's state table."""

from __future__ import annotations

import json
import time

import paho.mqtt.client as mqtt
import pytest

from edge.admin import model, reading
from simulators.kit.mqtt import JSON_SUB, InProcessEdge, edge_config, wait_until


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


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_a_subscription_the_acl_refuses_is_subscribe_failed_and_the_rest_flows(broker, tmp_path, protocol):
    """The shipped broker (mosquitto/init.sh: the dynamic-security plugin) refuses a filter outside the edge
    user's rules in the SUBACK (0x80 / reason 0x87); with the acl_file it had, every SUBSCRIBE was granted."""
    subs = (JSON_SUB, {**JSON_SUB, "topic": "other/#"})
    edge = InProcessEdge(edge_config(tmp_path, broker, subs=subs, protocol=protocol))
    acl_broker = broker
    try:
        st = edge.wait_state("subscribe_failed")
        assert "other/#" in st["detail"] and "plant/#" not in st["detail"].split("(check")[0]
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
