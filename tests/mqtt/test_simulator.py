"""The MQTT simulator: payloads decode with the collector's own parsers; counters on SIGUSR1 and exit."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading

import paho.mqtt.client as mqtt

from edge.sources.mqtt.sparkplug import Decoder
from simulators.mqtt import payloads
from simulators.plant import Plant
from simulators.kit.broker import ROOT
from simulators.kit.mqtt import wait_until


def test_sparkplug_payloads_round_trip_through_the_decoder():
    plant = Plant(lines=1, seed=3)
    node = payloads.SparkplugNode("plant", "sim9", plant.signals)
    d = Decoder()
    values = plant.step(10.0)
    d.parse(*node.nbirth(1_764_000_000_000, 1))
    for i, machine in enumerate(plant.machines):
        d.parse(*node.dbirth(machine, values, 1_764_000_000_000, 2 + i))
    sig = plant.signals[0]
    out, _ = d.parse(*node.ddata(sig, 42.5, 1_764_000_000_500, 99))
    assert (out[0].point, out[0].value) == (f"plant/sim9/{payloads.device_id(sig.machine)}/{sig.name}", 42.5)
    assert (out[1].point.split("/")[-1], out[1].value) == ("msg_seq", 99)


def test_json_payload_shape():
    doc = json.loads(payloads.json_payload(65.2, 1_764_000_000_123, 17, "degC"))
    assert doc == {"ts": 1_764_000_000_123, "value": 65.2, "quality": "GOOD", "unit": "degC", "seq": 17}
    assert json.loads(payloads.json_payload(float("nan"), 1, 1, ""))["quality"] == "BAD"


def test_counters_on_sigusr1_and_at_exit(broker, tmp_path):
    counters = tmp_path / "c.json"
    p = subprocess.Popen(
        [sys.executable, "-m", "simulators.mqtt", "--port", str(broker.port), "--publisher-id", "sim4",
         "--password-file", str(broker.password_file("sim4")), "--rate", "200", "--duration", "4",
         "--counters-file", str(counters), "--auto-faults"], cwd=ROOT, stderr=subprocess.PIPE)
    try:
        # SIGUSR1 before the simulator installed its handler would kill it: wait for its first message
        # (it publishes only after installing the handler), not for a fixed time.
        got = threading.Event()
        sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-watch-sim4")
        sub.username_pw_set("edge", broker.password("edge"))
        sub.on_connect = lambda c, u, f, rc, props: c.subscribe("plant/sim4/#", qos=0)
        sub.on_message = lambda c, u, m: got.set()
        sub.connect("127.0.0.1", broker.port)
        sub.loop_start()
        try:
            assert got.wait(30), "the simulator published nothing"
        finally:
            sub.loop_stop()
        p.send_signal(signal.SIGUSR1)
        mid = wait_until(lambda: counters.exists() and json.loads(counters.read_text()), 10, "counters on SIGUSR1")
        assert mid["published"] > 0
        assert p.wait(30) == 0, p.stderr.read().decode()
    finally:
        if p.poll() is None:
            p.kill()
    end = json.loads(counters.read_text())
    assert end["published"] > mid["published"]
    assert end["acked"] == end["published"] and end["unacked"] == 0
    assert end["acked_ranges"] == [[1, end["published"]]]
