"""MQTT plant simulator: ``python -m simulators.mqtt --port 1883 --username sim1 --password-file F``.

Publishes the signals of ``simulators.plant.Plant`` (temperatures, pressures,
flows, motor states, counters, alarms, with drift, noise, steps and faults) at
``--rate`` messages/s, QoS 1, round robin over the signals. Every message
carries a per-publisher sequence number (``seq`` in JSON, the ``msg_seq``
metric in Sparkplug) so a test can reconcile what was published against what
landed. Counters (published, broker-acknowledged, acknowledged seq ranges) are
written as JSON to ``--counters-file`` (or stdout) at exit and on SIGUSR1.
Run several processes with different ``--publisher-id`` for load.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import ssl
import sys
import threading
import time

import paho.mqtt.client as mqtt

from simulators.mqtt import payloads
from simulators.plant import Plant


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m simulators.mqtt", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--username", default=None, help="default: the publisher id")
    p.add_argument("--password-file", default=None, help="file holding the password (first line)")
    p.add_argument("--ca-file", default=None, help="CA to verify the broker: enables TLS")
    p.add_argument("--publisher-id", default="sim1", help="topic prefix / Sparkplug edge node id")
    p.add_argument("--flavour", choices=("json", "sparkplug"), default="json")
    p.add_argument("--group", default="plant", help="Sparkplug group id")
    p.add_argument("--rate", type=float, default=50.0, help="messages per second (all signals together)")
    p.add_argument("--lines", type=int, default=2, help="production lines in the plant model")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--count", type=int, default=0, help="stop after this many data messages (0: run until stopped)")
    p.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: no limit)")
    p.add_argument("--start-seq", type=int, default=1)
    p.add_argument("--qos", type=int, choices=(0, 1), default=1)
    p.add_argument("--max-unacked", type=int, default=5000, help="pause publishing beyond this many unacked messages")
    p.add_argument("--drain-timeout", type=float, default=30.0, help="at the end, wait this long for PUBACKs")
    p.add_argument("--counters-file", default=None)
    p.add_argument("--auto-faults", action="store_true", help="schedule stuck/out-of-range/offline faults")
    return p.parse_args(argv)


class Counters:
    def __init__(self, publisher: str, flavour: str):
        self.publisher, self.flavour = publisher, flavour
        self.published = 0
        self.acked = 0
        self.ranges: list[list[int]] = []  # acked seqs as [first, last] ranges
        self.first_seq: int | None = None
        self.last_seq: int | None = None
        self.connects = 0
        self.started = time.time()

    def add_acked(self, seq: int) -> None:
        self.acked += 1
        if self.ranges and self.ranges[-1][1] + 1 == seq:
            self.ranges[-1][1] = seq
        else:
            self.ranges.append([seq, seq])

    def doc(self, unacked: int) -> dict:
        elapsed = time.time() - self.started
        return {
            "publisher": self.publisher, "flavour": self.flavour, "published": self.published,
            "acked": self.acked, "unacked": unacked, "acked_ranges": self.ranges,
            "first_seq": self.first_seq, "last_seq": self.last_seq, "connects": self.connects,
            "elapsed_s": round(elapsed, 3), "rate": round(self.published / elapsed, 1) if elapsed else 0.0,
        }


def main(argv=None) -> int:
    a = parse_args(argv)
    username = a.username or a.publisher_id
    password = None
    if a.password_file:
        with open(a.password_file) as f:
            password = f.readline().strip()
    plant = Plant(lines=a.lines, seed=a.seed)
    if a.auto_faults:
        plant.auto_faults(horizon=86400.0, every=120.0, duration=20.0)
    signals = plant.signals
    counters = Counters(a.publisher_id, a.flavour)
    pending: collections.deque = collections.deque()  # (seq, MQTTMessageInfo) in publish order
    need_birth = threading.Event()
    stop = threading.Event()

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"sim-{a.publisher_id}", clean_session=False,
        protocol=mqtt.MQTTv311,
    )
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    if username:
        client.username_pw_set(username, password)
    if a.ca_file:
        client.tls_set_context(ssl.create_default_context(cafile=a.ca_file))
    node = None
    if a.flavour == "sparkplug":
        node = payloads.SparkplugNode(a.group, a.publisher_id, signals)
        client.will_set(*node.death(), qos=1)

    def on_connect(c, userdata, flags, rc, props):
        if rc.is_failure:
            print(f"simulator {a.publisher_id}: connect refused: {rc}", file=sys.stderr, flush=True)
            return
        counters.connects += 1
        need_birth.set()

    client.on_connect = on_connect
    client.reconnect_delay_set(0.2, 2.0)
    client.connect_async(a.host, a.port, keepalive=30)
    client.loop_start()

    def write_counters(*_):
        doc = json.dumps(counters.doc(len(pending)))
        if a.counters_file:
            tmp = a.counters_file + ".tmp"
            with open(tmp, "w") as f:
                f.write(doc)
            os.replace(tmp, a.counters_file)
        else:
            print(doc, flush=True)

    signal.signal(signal.SIGUSR1, write_counters)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    seq = a.start_seq
    t0 = time.time()

    def settle() -> None:
        while pending and pending[0][1].is_published():
            s, _ = pending.popleft()
            counters.add_acked(s)

    def publish(topic: str, body: bytes) -> None:
        nonlocal seq
        while len(pending) >= a.max_unacked and not stop.is_set():
            settle()
            time.sleep(0.001)
        info = client.publish(topic, body, qos=a.qos)
        if counters.first_seq is None:
            counters.first_seq = seq
        counters.last_seq = seq
        counters.published += 1
        if a.qos:
            pending.append((seq, info))
        seq += 1

    # Wait for the first connection so BIRTHs go first (Sparkplug requires it).
    deadline = time.monotonic() + 30
    while not need_birth.is_set() and time.monotonic() < deadline and not stop.is_set():
        time.sleep(0.01)
    owed = 0.0
    last = time.monotonic()
    data_sent = 0
    i = 0
    while not stop.is_set():
        if a.count and data_sent >= a.count:
            break
        if a.duration and time.time() - t0 >= a.duration:
            break
        now = time.time()
        ts_ms = int(now * 1000)
        if node is not None and need_birth.is_set():
            need_birth.clear()
            node.bd_seq += 1
            values = plant.step(now - t0)
            publish(*node.nbirth(ts_ms, seq))
            for machine in plant.machines:
                publish(*node.dbirth(machine, values, ts_ms, seq))
        m = time.monotonic()
        owed = min(owed + (m - last) * a.rate, max(a.rate, 1.0))
        last = m
        n = int(owed)
        if n == 0:
            settle()
            time.sleep(min(0.01, max(0.0005, 1.0 / a.rate)))
            continue
        owed -= n
        for _ in range(n):
            if a.count and data_sent >= a.count:
                break
            sig = signals[i % len(signals)]
            i += 1
            value = plant.value(sig.path, now - t0)
            if value is None:
                continue  # offline fault: the device says nothing
            if node is None:
                publish(payloads.json_topic(a.publisher_id, sig.path), payloads.json_payload(value, ts_ms, seq, sig.unit))
            else:
                publish(*node.ddata(sig, value, ts_ms, seq))
            data_sent += 1
        settle()
    deadline = time.monotonic() + a.drain_timeout
    while pending and time.monotonic() < deadline:
        settle()
        time.sleep(0.01)
    settle()
    write_counters()
    client.disconnect()
    client.loop_stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
