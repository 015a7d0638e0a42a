"""The MQTT collector against a real Mosquitto (shipped config) and the real spool writer."""

from __future__ import annotations

import json
import time

import paho.mqtt.client as mqtt
import pytest

from edge.encode import decode
from edge.pb.sparkplug_b_pb2 import Payload
from edge.spool import SpoolReader
from simulators.kit.broker import Broker
from simulators.kit.mqtt import InProcessEdge, edge_config, wait_until
from tests.mqtt.harness import acked_seqs, make_certs, run_simulator, seqs_by_publisher, spool_readings


def publisher(broker: Broker, user: str = "sim1", **kw) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{user}", **kw)
    c.username_pw_set(user, broker.password(user))
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    return c


def publish_all(c: mqtt.Client, msgs: list[tuple[str, bytes]]) -> None:
    infos = [c.publish(t, p, qos=1) for t, p in msgs]
    for i in infos:
        i.wait_for_publish(10)
        assert i.is_published()


def test_every_published_message_lands_once_and_is_acked(broker, tmp_path):
    edge = InProcessEdge(edge_config(tmp_path, broker))
    try:
        edge.wait_state("connected")
        sent_json = run_simulator(broker, "sim1", count=3000, rate=3000)
        sent_sp = run_simulator(broker, "sim2", count=1000, rate=2000, flavour="sparkplug")
        wait_until(lambda: edge.source.counts["acked"] >= sent_json["published"] + sent_sp["published"], 30, "acks")
        got = seqs_by_publisher(spool_readings(edge.spool_path))
        assert sorted(got["sim1"]) == sorted(acked_seqs(sent_json)) == list(range(1, 3001))
        assert sorted(got["sim2"]) == sorted(acked_seqs(sent_sp))
        assert edge.state()["quarantined_total"] == 0
    finally:
        edge.stop()
    # Everything was acknowledged: a new session of the same client gets nothing redelivered.
    edge = InProcessEdge(edge_config(tmp_path, broker))
    try:
        edge.wait_state("connected")
        # A redelivery would come before a message published now: wait for that one, then count.
        c = publisher(broker)
        publish_all(c, [("plant/sim1/marker", b'{"value": 1, "ts": 1764000000000}')])
        c.loop_stop()
        wait_until(lambda: edge.source.counts["messages"] >= 1, 10, "the marker")
        assert edge.source.counts["messages"] == 1
    finally:
        edge.stop()


def test_malformed_payloads_are_quarantined_and_the_stream_continues(broker, tmp_path):
    edge = InProcessEdge(edge_config(tmp_path, broker, subs=(
        {"topic": "plant/sim1/num/#", "format": "number"},
        {"topic": "plant/#", "json": {"value": "value", "timestamp": "ts"}},
        {"topic": "spBv1.0/#", "format": "sparkplug"},
    )))
    bad = [
        ("plant/sim1/a", b"{not json", "invalid JSON"),
        ("plant/sim1/b", b'{"value": {"x": 1}}', "json.structured"),
        ("plant/sim1/c", b'{"value": 1, "ts": "later"}', "not ISO 8601"),
        ("plant/sim1/d", b"\xff\xfe\x00garbage", "not valid UTF-8"),
        ("plant/sim1/num/e", b"twelve", "not a number"),
        ("plant/sim1/f", b"x" * (1024 * 1024), "exceeds max_payload_bytes"),
    ]
    sp = Payload(timestamp=int(time.time() * 1000))
    sp.metrics.add(alias=42, double_value=1.0)
    try:
        edge.wait_state("connected")
        c = publisher(broker)
        c2 = publisher(broker, "sim2")
        publish_all(c, [(t, p) for t, p, _ in bad] + [("plant/sim1/ok", b'{"value": 7}')])
        publish_all(c2, [("spBv1.0/plant/DDATA/sim2/dev", sp.SerializeToString())])
        publish_all(c, [("plant/sim1/num/ok", b"3.5")])
        wait_until(lambda: edge.source.counts["acked"] >= len(bad) + 3, 20, "all acked")
        with SpoolReader(edge.spool_path) as r:
            q = wait_until(lambda: r.quarantined(100) if len(r.quarantined(100)) >= len(bad) + 1 else None, 10, "quarantine")
        reasons = {row["meta"]["topic"] if isinstance(row["meta"], dict) else json.loads(row["meta"])["topic"]: row
                   for row in q}
        for topic, raw, why in bad:
            row = reasons[topic]
            assert why in row["reason"], row["reason"]
            assert row["source"] == "mqtt1"
        huge = reasons["plant/sim1/f"]
        assert len(huge["raw"]) == 64 * 1024  # bounded
        assert "unknown metric alias 42" in reasons["spBv1.0/plant/DDATA/sim2/dev"]["reason"]
        points = {r.point: r for r in spool_readings(edge.spool_path)}
        assert points["plant/sim1/ok"].value_double == 7 and points["plant/sim1/ok"].data_type == "double"  # numbers are double unless declared
        assert points["plant/sim1/num/ok"].value_double == 3.5
        assert edge.state()["quarantined_total"] == len(bad) + 1
        c.loop_stop()
        c2.loop_stop()
    finally:
        edge.stop()


def test_wrong_password_is_a_visible_state_and_queued_data_survives(broker, tmp_path):
    # A first good connection creates the persistent session the broker queues for.
    edge = InProcessEdge(edge_config(tmp_path, broker))
    edge.wait_state("connected")
    edge.stop()
    edge = InProcessEdge(edge_config(tmp_path, broker, password="not-the-password", auth_backoff=60))
    try:
        st = edge.wait_state("auth_failed")
        assert "edge" in st["detail"] and ("password" in st["detail"].lower() or "authori" in st["detail"].lower())
        assert "not-the-password" not in json.dumps(st)
        sent = run_simulator(broker, "sim1", count=500, rate=2000)
        # Checking that something does NOT happen needs a window: a backoff retry would come
        # within reconnect_max (1 s); give it twice that.
        time.sleep(2.0)
        assert edge.state()["state"] == "auth_failed"
        assert edge.thread.is_alive() and edge.error is None
        # auth_backoff: one refused attempt, not a tight reconnect loop hammering the broker
        assert broker.log.count("not authorised") == 1
    finally:
        edge.stop()
    edge = InProcessEdge(edge_config(tmp_path, broker))
    try:
        wait_until(lambda: len(seqs_by_publisher(spool_readings(edge.spool_path)).get("sim1", [])) >= 500, 20, "backlog")
        got = seqs_by_publisher(spool_readings(edge.spool_path))["sim1"]
        assert sorted(got) == sorted(acked_seqs(sent))
    finally:
        edge.stop()


def test_spool_full_stops_acking_and_resumes_without_loss(broker, tmp_path):
    edge = InProcessEdge(edge_config(tmp_path, broker, spool_max="1MiB", max_inflight=200))
    try:
        edge.wait_state("connected")
        sent = run_simulator(broker, "sim1", count=12000, rate=6000)  # ~3 MB of readings: 3x the budget
        st = edge.wait_state("blocked", 30)
        assert "spool full" in st["detail"]
        acked_before = edge.source.counts["acked"]
        time.sleep(1.0)  # a window on purpose: nothing may be acknowledged during it
        assert edge.source.counts["acked"] == acked_before  # nothing acknowledged while full
        # Play forwarder: deliver (ack) what the spool holds, repeatedly, until everything arrived.
        seen: list[int] = []

        def drain() -> bool:
            with SpoolReader(edge.spool_path) as r:
                rows = r.peek(r.watermark(), 1_000_000, None)
            if rows:
                seen.extend(seqs_by_publisher([decode(b) for _, b in rows]).get("sim1", []))
                edge.writer.ack(rows[-1][0]).result(10)
            return len(set(seen)) >= 12000

        wait_until(drain, 60, "all messages through a full spool", every=0.3)
        assert set(seen) == acked_seqs(sent)
        assert len(seen) == len(set(seen))  # no duplicates without a crash
        wait_until(lambda: edge.state()["state"] == "connected", 10, "flowing again")
    finally:
        edge.stop()


def test_sparkplug_aliases_survive_an_edge_restart(broker, tmp_path):
    edge = InProcessEdge(edge_config(tmp_path, broker))
    edge.wait_state("connected")
    first = run_simulator(broker, "sim3", count=200, rate=1000, flavour="sparkplug")
    wait_until(lambda: edge.source.counts["acked"] >= first["published"], 20, "first batch")
    edge.stop()
    # While the edge is down the node keeps sending DDATA by alias only (no new BIRTH reaches us
    # before them... the simulator's BIRTHs are in this run too, so send raw DDATA ourselves).
    c = publisher(broker, "sim3")
    p = Payload(timestamp=int(time.time() * 1000))
    p.metrics.add(alias=1, double_value=123.25)
    publish_all(c, [("spBv1.0/plant/DDATA/sim3/line1-press1", p.SerializeToString())])
    c.loop_stop()
    edge = InProcessEdge(edge_config(tmp_path, broker))
    try:
        wait_until(lambda: edge.source.counts["acked"] >= 1, 20, "redelivery after restart")
        rs = [r for r in spool_readings(edge.spool_path) if r.point == "plant/sim3/line1-press1/temperature"]
        assert rs[-1].value_double == 123.25
        assert edge.state()["quarantined_total"] == 0
    finally:
        edge.stop()


@pytest.fixture
def tls_broker(request):
    certs = make_certs("broker.test")  # SAN: broker.test and 127.0.0.1
    overrides = getattr(request, "param", None)
    b = Broker(certs={k: certs[k] for k in ("ca.crt", "server.crt", "server.key")}, overrides=overrides)
    b.start()
    b.certs = certs
    try:
        yield b
    finally:
        b.cleanup()


def test_tls_with_verification_and_a_wrong_ca_is_refused(tls_broker, tmp_path):
    b = tls_broker
    assert "TLS listener enabled" in b.init_log
    (tmp_path / "ca.crt").write_bytes(b.certs["ca.crt"])
    (tmp_path / "other.crt").write_bytes(b.certs["other-ca.crt"])
    good = tmp_path / "good"
    edge = InProcessEdge(edge_config(good, b, url=f"mqtts://127.0.0.1:{b.tls_port}", ca_file=str(tmp_path / "ca.crt"),
                                     protocol="5"))
    try:
        edge.wait_state("connected")
        c = publisher(b)
        publish_all(c, [("plant/sim1/x", b'{"value": 1.5}')])
        c.loop_stop()
        wait_until(lambda: edge.source.counts["acked"] >= 1, 10, "message over TLS")
    finally:
        edge.stop()
    bad = tmp_path / "bad"
    edge = InProcessEdge(edge_config(bad, b, url=f"mqtts://127.0.0.1:{b.tls_port}", ca_file=str(tmp_path / "other.crt")))
    try:
        st = edge.wait_state("tls_error")
        assert "certificate verify failed" in st["detail"].lower() or "certificate" in st["detail"].lower()
        assert edge.source.counts["messages"] == 0
    finally:
        edge.stop()
    edge = InProcessEdge(edge_config(tmp_path / "nofile", b, url=f"mqtts://127.0.0.1:{b.tls_port}",
                                     ca_file=str(tmp_path / "missing.crt")))
    try:
        st = edge.wait_state("tls_error")
        assert "cannot load ca_file" in st["detail"] and "missing.crt" in st["detail"]
    finally:
        edge.stop()
    # The name is verified too: localhost reaches the same broker but is not in its certificate.
    edge = InProcessEdge(edge_config(tmp_path / "name", b, url=f"mqtts://localhost:{b.tls_port}",
                                     ca_file=str(tmp_path / "ca.crt")))
    try:
        st = edge.wait_state("tls_error")
        assert "localhost" in st["detail"] and "mismatch" in st["detail"].lower()
    finally:
        edge.stop()


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_reconnects_after_a_broker_kill_and_keeps_its_session(broker, tmp_path, protocol):
    edge = InProcessEdge(edge_config(tmp_path, broker, protocol=protocol))
    try:
        edge.wait_state("connected")
        broker.kill()
        wait_until(lambda: edge.state()["state"] == "connect_failed", 10, "the broker's absence to show")
        assert "cannot reach 127.0.0.1" in edge.state()["detail"]
        broker.start()
        edge.wait_state("connected", 20)
        sent = run_simulator(broker, "sim1", count=300, rate=2000)
        wait_until(lambda: sorted(seqs_by_publisher(spool_readings(edge.spool_path)).get("sim1", [])) == sorted(
            acked_seqs(sent)), 20, "messages after the broker came back")
    finally:
        edge.stop()
    # The session (MQTT 5: clean_start=false + session expiry) queues for us while we are away.
    sent = run_simulator(broker, "sim2", count=200, rate=2000)
    edge = InProcessEdge(edge_config(tmp_path, broker, protocol=protocol))
    try:
        wait_until(lambda: sorted(seqs_by_publisher(spool_readings(edge.spool_path)).get("sim2", [])) == sorted(
            acked_seqs(sent)), 20, "the queue kept while the edge was away")
    finally:
        edge.stop()


def test_pubacks_are_coalesced_into_one_write_in_order():
    from edge.sources.mqtt.collector import send_pubacks

    queued = []

    class Client:  # stands in for paho's internal queue only: the wire bytes are the point
        def _packet_queue(self, command, packet, mid, qos):
            queued.append((command, packet))

    send_pubacks(Client(), [1, 258, 65535])
    assert queued == [(0x40, b"\x40\x02\x00\x01" + b"\x40\x02\x01\x02" + b"\x40\x02\xff\xff")]


@pytest.mark.parametrize("tls_broker", [{"require_certificate": "true"}], indirect=True)
def test_client_certificate(tls_broker, tmp_path):
    b = tls_broker
    for name in ("ca.crt", "client.crt", "client.key"):
        (tmp_path / name).write_bytes(b.certs[name])
    url = f"mqtts://127.0.0.1:{b.tls_port}"
    edge = InProcessEdge(edge_config(tmp_path / "nocert", b, url=url, ca_file=str(tmp_path / "ca.crt")))
    try:
        wait_until(lambda: edge.state()["state"] in ("tls_error", "connect_failed"), 15, "refusal without a certificate")
        assert edge.source.counts["messages"] == 0
    finally:
        edge.stop()
    edge = InProcessEdge(edge_config(tmp_path / "cert", b, url=url, ca_file=str(tmp_path / "ca.crt"),
                                     cert_file=str(tmp_path / "client.crt"), key_file=str(tmp_path / "client.key")))
    try:
        edge.wait_state("connected")
    finally:
        edge.stop()


def test_a_filter_removed_from_the_config_is_unsubscribed(broker, tmp_path):
    edge = InProcessEdge(edge_config(tmp_path, broker, subs=({"topic": "plant/sim1/#"}, {"topic": "plant/sim2/#"})))
    edge.wait_state("connected")
    wait_until(lambda: (tmp_path / "sources" / "mqtt1" / "mqtt-subscriptions.json").exists(), 10, "SUBACK")
    edge.stop()
    edge = InProcessEdge(edge_config(tmp_path, broker, subs=({"topic": "plant/sim1/#"},)))
    try:
        edge.wait_state("connected")
        wait_until(lambda: '"plant/sim2/#"' not in (tmp_path / "sources" / "mqtt1" / "mqtt-subscriptions.json").read_text(),
                   10, "the new subscription set")
        c = publisher(broker, "sim2")
        publish_all(c, [("plant/sim2/a", b'{"value": 1}')])
        c.loop_stop()
        c = publisher(broker, "sim1")
        publish_all(c, [("plant/sim1/a", b'{"value": 2}')])
        c.loop_stop()
        # sim2's message went to the broker first: had it been delivered, it would be here before sim1's.
        wait_until(lambda: any(r.point == "plant/sim1/a" for r in spool_readings(edge.spool_path)), 10, "the sim1 message")
        assert edge.source.counts["messages"] == 1 and edge.state()["quarantined_total"] == 0
    finally:
        edge.stop()
