"""The MQTT interop matrix: the same checks of our collector against any broker we did not write.

A broker under test is a ``ForeignBroker``: its own process on free loopback ports (plain and
TLS), users ``edge`` and ``pub`` with passwords, and ``kill``/``start`` on the same ports. Each
``check_*`` runs the real collector (``InProcessEdge``: real spool writer, real paho session)
against it; publishers are plain paho clients. Results: mqtt/README.md, "Interoperability".
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
from pathlib import Path

import paho.mqtt.client as mqtt

from edge.config import parse
from simulators.kit import procs
from simulators.kit.broker import free_port
from simulators.kit.mqtt import InProcessEdge
from simulators.kit.wait import wait_until
from tests.mqtt.harness import make_certs, spool_readings

T0 = 1_764_000_000_000


class ForeignBroker:
    """A broker process; subclasses write its config in ``configure`` and name its command in ``argv``."""

    name = "broker"

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.port, self.tls_port = free_port(), free_port()
        self.passwords = {"edge": secrets.token_urlsafe(16), "pub": secrets.token_urlsafe(16)}
        self.certs = make_certs()
        for name in ("ca.crt", "other-ca.crt", "server.crt", "server.key"):
            (tmp / name).write_bytes(self.certs[name])
        self.proc: subprocess.Popen | None = None
        self.runs = 0
        self.configure()
        self.start()

    def configure(self) -> None:
        raise NotImplementedError

    def argv(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        self.runs += 1
        self.log = self.tmp / f"{self.name}-{self.runs}.log"
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(self.argv(), stdout=out, stderr=subprocess.STDOUT, cwd=self.tmp)
        wait_until(self._listening, 30, f"{self.name} listening on {self.port} and {self.tls_port}")

    def _listening(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-2000:]
        for port in (self.port, self.tls_port):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) != 0:
                    return False
        return True

    def kill(self) -> None:
        procs.kill(self.proc)

    def stop(self) -> None:
        procs.stop(self.proc, 10)


def edge_config(tmp: Path, broker: ForeignBroker, subs: list[dict], *, tls: bool = False, ca: str = "ca.crt",
                password: str | None = None, **more):
    url = f"mqtts://127.0.0.1:{broker.tls_port}" if tls else f"mqtt://127.0.0.1:{broker.port}"
    source = {"name": "mqtt1", "type": "mqtt", "url": url, "subscriptions": subs, "username": "edge",
              "password": broker.passwords["edge"] if password is None else password,
              "reconnect_initial": 0.2, "reconnect_max": 1.0, "auth_backoff": 1.0, **more}
    if tls:
        source["ca_file"] = str(broker.tmp / ca)
    return parse({
        "appliance_id": "edge-interop", "data_dir": str(tmp),
        "spool": {"path": str(tmp / "spool.db"), "max_bytes": "1GiB", "when_full": "block", "min_free_bytes": 0},
        "sources": [source],
    }, env={})


def publish(broker: ForeignBroker, msgs: list[tuple[str, bytes, bool]], qos: int = 1) -> None:
    """Publish and wait for the broker's PUBACK of each (QoS 1), or for each to be written (QoS 0)."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"interop-pub-{secrets.token_hex(3)}")
    c.username_pw_set("pub", broker.passwords["pub"])
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    try:
        infos = [c.publish(t, p, qos=qos, retain=r) for t, p, r in msgs]
        for i in infos:
            i.wait_for_publish(20)
            assert i.is_published()
    finally:
        c.disconnect()
        c.loop_stop()


def deliver(cfg, broker: ForeignBroker, msgs: list[tuple[str, bytes, bool]], what: str) -> InProcessEdge:
    """Run the collector, publish ``msgs`` (QoS 1) once it is connected, stop when it has acknowledged them all."""
    edge = InProcessEdge(cfg)
    try:
        edge.wait_state("connected")
        publish(broker, msgs)
        wait_until(lambda: edge.source.counts["acked"] >= len(msgs), 30, what)
    finally:
        edge.stop()
    return edge


def come_back(cfg, broker: ForeignBroker, marker: int) -> list:
    """Start the collector again, publish the value ``marker`` once it is connected (anything the
    broker kept for the session comes before it), and return every value stored, in order."""
    edge = InProcessEdge(cfg)
    try:
        edge.wait_state("connected", 20)
        publish(broker, series(1, start=marker))
        wait_until(lambda: marker in values(edge.spool_path, "plant/d1/value"), 30, "the marker")
    finally:
        edge.stop()
    return values(edge.spool_path, "plant/d1/value")


def series(n: int, start: int = 0, topic: str = "plant/d1/value") -> list[tuple[str, bytes, bool]]:
    return [(topic, json.dumps({"v": i, "ts": T0 + i}).encode(), False) for i in range(start, start + n)]


def values(spool: str, point: str) -> list:
    return [r.value_double for r in spool_readings(spool) if r.kind == "reading" and r.point == point]


def column(r) -> tuple[str, object]:
    for f in ("value_int", "value_double", "value_bool", "value_string"):
        if r.HasField(f):
            return f, getattr(r, f)
    return "", None


SERIES_SUB = [{"topic": "plant/#", "json": {"value": "v", "timestamp": "ts", "timestamp_format": "epoch_ms"}}]
TYPED_SUBS = [
    {"topic": "typed/#", "json": {"value": "v"},
     "types": {"typed/count": "int64", "typed/big": "int64", "typed/on": "bool", "typed/state": "string"}},
    {"topic": "fast/#", "qos": 0, "json": {"value": "v"}},
]
TYPED = {  # topic -> (payload value, the column it must land in, the value there)
    "typed/count": (42, "value_int", 42),
    "typed/big": (2**53 + 1, "value_int", 2**53 + 1),  # not exact as a double
    "typed/on": (True, "value_bool", True),
    "typed/state": ("RUN", "value_string", "RUN"),
    "typed/temp": (21.5, "value_double", 21.5),
}


def check_typed_values_qos0_qos1_and_a_retained_value(broker: ForeignBroker, tmp: Path) -> int:
    """Typed values over a QoS 1 subscription and a QoS 0 one; then a retained value sent on subscribe.

    Returns how many copies of the retained value a new session stored (MQTT: one).
    """
    edge = InProcessEdge(edge_config(tmp, broker, TYPED_SUBS))
    try:
        edge.wait_state("connected")
        publish(broker, [(t, json.dumps({"v": v}).encode(), False) for t, (v, _, _) in TYPED.items()])
        publish(broker, [(f"fast/{i}", json.dumps({"v": i}).encode(), False) for i in range(50)], qos=0)
        wait_until(lambda: edge.source.counts["messages"] >= 55, 20, "5 QoS 1 and 50 QoS 0 messages")
        wait_until(lambda: edge.source.counts["acked"] >= 5, 10, "the 5 QoS 1 messages acknowledged")
    finally:
        edge.stop()
    got = {r.point: r for r in spool_readings(edge.spool_path) if r.kind == "reading"}
    for topic, (_, field, want) in TYPED.items():
        assert column(got[topic]) == (field, want), (topic, column(got[topic]))
    assert sorted(column(got[f"fast/{i}"])[1] for i in range(50)) == list(range(50))
    assert edge.source.counts["acked"] == 5, "QoS 0 messages have no PUBACK"
    # A retained value published before a subscription exists reaches it on SUBSCRIBE (a new session).
    publish(broker, [("typed/setpoint", b'{"v": 80.5}', True)])
    edge = InProcessEdge(edge_config(tmp / "retained", broker, TYPED_SUBS, client_id="interop-new-session"))
    try:
        edge.wait_state("connected")
        wait_until(lambda: edge.source.counts["acked"] >= 1, 10, "the retained value")
    finally:
        edge.stop()
    got = [(r.point, column(r)) for r in spool_readings(edge.spool_path) if r.kind == "reading"]
    assert got and set(got) == {("typed/setpoint", ("value_double", 80.5))}, got
    return len(got)


def check_broker_restart(broker: ForeignBroker, tmp: Path) -> tuple[list, list]:
    """The broker is killed and started again on the same port while the collector runs.

    The collector must come back, subscribe again if the broker lost its session, and store
    what is published after the restart. Returns (values stored, values published while the
    collector was away across a second restart: those a broker without persistence loses).
    """
    edge = InProcessEdge(edge_config(tmp, broker, SERIES_SUB))
    try:
        edge.wait_state("connected")
        publish(broker, series(100))
        wait_until(lambda: edge.source.counts["acked"] >= 100, 20, "100 before the restart")
        broker.kill()
        wait_until(lambda: edge.state()["state"] in ("connect_failed", "reconnecting"), 10, "the broker's absence")
        broker.start()
        edge.wait_state("connected", 20)
        publish(broker, series(100, start=100))
        wait_until(lambda: edge.source.counts["acked"] >= 200, 20, "100 after the restart")
        assert edge.state()["reconnects_total"] >= 1
    finally:
        edge.stop()
    # Away, and the broker restarts meanwhile: is the persistent session's queue kept?
    publish(broker, series(50, start=200))
    broker.stop()
    broker.start()
    got = come_back(edge_config(tmp, broker, SERIES_SUB), broker, 250)
    assert got[:200] == list(range(200)) and got[-1] == 250, got
    return got, got[200:-1]


def check_queue_while_away(broker: ForeignBroker, tmp: Path) -> list:
    """The collector's persistent session (clean_session=false) while it is away: returns what the
    broker delivered of the 50 QoS 1 messages published then (MQTT: all of them, in order)."""
    cfg = edge_config(tmp, broker, SERIES_SUB)
    deliver(cfg, broker, series(10), "10 before going away")
    publish(broker, series(50, start=10))
    got = come_back(cfg, broker, 60)
    assert got[:10] == list(range(10)) and got[-1] == 60, got
    return got[10:-1]


def check_unacknowledged_redelivery(broker: ForeignBroker, tmp: Path, subs: list[dict] | None = None) -> list:
    """Returns what the broker sent again of 50 QoS 1 messages the collector committed but never acknowledged.

    The PUBACKs are withheld (the outermost edge: as if the appliance died after the commit, before
    the PUBACK). MQTT 4.4.0-1: the broker sends them again on the session's next connection (all 50).
    """
    cfg = edge_config(tmp, broker, subs or SERIES_SUB)
    deliver(cfg, broker, series(100), "100 acknowledged")
    edge = InProcessEdge(cfg)
    edge.source.ack = lambda msgs: None
    try:
        edge.wait_state("connected")
        publish(broker, series(50, start=100))
        wait_until(lambda: len(values(edge.spool_path, "plant/d1/value")) >= 150, 30, "50 committed, none acknowledged")
    finally:
        edge.stop()
    got = come_back(cfg, broker, 150)
    assert got[:150] == list(range(150)) and got[-1] == 150, got
    return got[150:-1]


def check_tls_and_credentials(broker: ForeignBroker, tmp: Path, refused: str = "auth_failed") -> dict:
    """mqtts with the broker's CA verified (and its name), a wrong CA refused, a wrong password refused.

    ``refused``: the state a wrong password shows (``auth_failed`` when the broker answers with a
    CONNACK refusal code, as MQTT says it should); returns that state.
    """
    edge = deliver(edge_config(tmp / "tls", broker, SERIES_SUB, tls=True), broker, series(10), "10 over TLS")
    assert values(edge.spool_path, "plant/d1/value") == list(range(10))
    edge = InProcessEdge(edge_config(tmp / "wrong-ca", broker, SERIES_SUB, tls=True, ca="other-ca.crt"))
    try:
        st = edge.wait_state("tls_error")
        assert "certificate" in st["detail"].lower()
    finally:
        edge.stop()
    edge = InProcessEdge(edge_config(tmp / "wrong-password", broker, SERIES_SUB, password="not-" + secrets.token_hex(4)))
    try:
        st = edge.wait_state(refused)
        assert broker.passwords["edge"] not in json.dumps(st)
        assert edge.source.counts["messages"] == 0
    finally:
        edge.stop()
    return st


def check_mqtt5_refused(broker: ForeignBroker, tmp: Path) -> str:
    """The collector configured for MQTT 5 against a broker that speaks 3.1.1 only: returns the error shown.

    MQTT 3.1.1 3.1.2.2: the broker MUST answer CONNACK 0x01 (unacceptable protocol level) and close.
    """
    edge = InProcessEdge(edge_config(tmp, broker, SERIES_SUB, protocol="5", connect_timeout=1))
    try:
        error = wait_until(lambda: edge.state()["last_error"], 15, "the refusal shown")
        assert edge.state()["state"] in ("connect_failed", "connecting", "reconnecting")
        assert edge.source.counts["messages"] == 0
    finally:
        edge.stop()
    return error
