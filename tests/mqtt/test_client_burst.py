"""The burst-reading paho client (edge/sources/mqtt/client.py) against a real Mosquitto."""

from __future__ import annotations

import json
import socket
import ssl
import threading

import paho.mqtt.client as mqtt
import pytest

from edge.sources.mqtt import client as mqtt_client
from edge.sources.mqtt.client import BufferedSocket, Client
from ops.mqttload import bench_payloads, publish_all
from simulators.kit.broker import Broker
from tests.mqtt.harness import make_certs


def test_buffered_socket_serves_small_reads_from_one_recv():
    a, b = socket.socketpair()
    try:
        b.sendall(b"0123456789")
        s = BufferedSocket(a)
        s.setblocking(False)  # passes through
        assert s.fileno() == a.fileno()
        assert s.pending() == 0  # nothing read yet: select() decides
        assert s.recv(1) == b"0"
        assert s.pending() == 9  # the rest came with the same recv
        assert s.recv(4) == b"1234"
        assert s.recv(100) == b"56789"  # a short read at the end of the buffer, as a socket would
        assert s.pending() == 0
        with pytest.raises(BlockingIOError):
            s.recv(1)
        b.close()
        assert s.recv(1) == b""  # EOF reaches paho unchanged
    finally:
        a.close()


def test_records_read_before_a_tls_error_are_delivered_first():
    class Tls:  # the shape of ssl.SSLSocket that matters: one record per recv, and pending()
        def __init__(self):
            self.script = [b"rec1", b"rec2", ConnectionResetError(104, "reset"), ConnectionResetError(104, "reset")]

        def pending(self):
            return 0

        def recv(self, n):
            item = self.script.pop(0)
            if isinstance(item, Exception):
                raise item
            return item

    s = BufferedSocket(Tls())
    assert s.recv(8) == b"rec1rec2"  # both records, not lost to the error that followed
    with pytest.raises(ConnectionResetError):
        s.recv(1)  # and the failure still reaches paho


def test_the_paho_hooks_it_relies_on_exist():
    # paho is pinned exactly; this fails loudly if an upgrade moves either hook.
    assert callable(getattr(mqtt.Client, "_create_socket", None))
    c = Client(mqtt.CallbackAPIVersion.VERSION2, client_id="hook-check")
    assert hasattr(c, "_sock")


def _drain_backlog(broker: Broker, n: int, *, tls: bool = False, ca: bytes | None = None, tmp_path=None):
    """Queue n messages for a persistent session, then read them with the burst client.

    Returns (payload seqs in arrival order, recv calls on the real socket, loop_read calls)."""
    sub = Client(mqtt.CallbackAPIVersion.VERSION2, client_id="burst", clean_session=False, manual_ack=True)
    sub.username_pw_set("edge", broker.password("edge"))
    port = broker.port
    if tls:
        (tmp_path / "ca.crt").write_bytes(ca)
        sub.tls_set_context(ssl.create_default_context(cafile=str(tmp_path / "ca.crt")))
        port = broker.tls_port
    subscribed = threading.Event()
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    sub.subscribe("plant/#", qos=1)
    assert subscribed.wait(10)
    sub.disconnect()
    sub.loop_stop()
    assert publish_all("127.0.0.1", broker.port, "sim1", broker.password("sim1"), "plant/sim1/burst",
                       bench_payloads(n)) == n

    recvs = [0]
    created = Client._create_socket

    def counting_socket(self):
        s = created(self)
        inner = s._sock
        real_recv = inner.recv

        class Counting:
            def __getattr__(self, name):
                return getattr(inner, name)

            def recv(self, k):
                recvs[0] += 1
                return real_recv(k)

        s._sock = Counting()
        return s

    got: list[int] = []
    done = threading.Event()
    reads = [0]
    burst_read = Client.loop_read

    def counting_loop_read(self, max_packets=1):
        reads[0] += 1
        return burst_read(self, max_packets)

    def on_message(c, u, m):
        got.append(json.loads(m.payload)["seq"])
        c.ack(m.mid, m.qos)
        if len(got) >= n:
            done.set()

    sub.on_message = on_message
    Client._create_socket = counting_socket
    try:
        sub.connect("127.0.0.1", port)
    finally:
        Client._create_socket = created
    Client.loop_read = counting_loop_read
    try:
        sub.loop_start()
        assert done.wait(60), f"received {len(got)} of {n}"
    finally:
        sub.disconnect()
        sub.loop_stop()
        Client.loop_read = burst_read
    return got, recvs[0], reads[0]


def test_a_backlog_arrives_whole_and_in_order_with_few_recv_calls(broker):
    n = 5000
    got, recvs, reads = _drain_backlog(broker, n)
    assert got == list(range(n))
    # paho alone makes 3-4 recv calls per PUBLISH (>15,000 here) and one loop turn per packet;
    # the buffer makes one recv per ~256 KiB received, but a backlog trickling in from the
    # broker gives smaller reads: allow a lot of slack.
    assert recvs < n / 4, f"{recvs} recv calls for {n} messages"
    assert reads < n / 4, f"{reads} loop turns for {n} messages"


def test_the_same_over_tls(tmp_path):
    certs = make_certs("broker.test")
    b = Broker(certs={k: certs[k] for k in ("ca.crt", "server.crt", "server.key")})
    b.start()
    try:
        n = 3000
        got, recvs, reads = _drain_backlog(b, n, tls=True, ca=certs["ca.crt"], tmp_path=tmp_path)
        assert got == list(range(n))
        # TLS hands over one record (one packet) per recv, but the records that have arrived
        # are gathered at once, so paho's loop still turns once per burst, not per message.
        assert reads < n / 4, f"{reads} loop turns for {n} messages"
    finally:
        b.cleanup()


def test_burst_is_bounded(monkeypatch):
    """loop_read returns after BURST_PACKETS even when more is buffered (writes and keepalive get a turn)."""
    calls = [0]

    def fake_read(self, max_packets=1):
        calls[0] += 1
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    class AlwaysPending:
        def pending(self):
            return 1

    monkeypatch.setattr(mqtt.Client, "loop_read", fake_read)
    c = Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bounded")
    c._sock = AlwaysPending()
    try:
        assert c.loop_read() == mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
        assert calls[0] == mqtt_client.BURST_PACKETS
    finally:
        c._sock = None  # not a socket: paho must not try to close it
