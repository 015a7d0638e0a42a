#!/usr/bin/env python3
"""MQTT -> spool throughput, against a bare paho subscriber measured in the same run.

    PYTHONPATH=. .venv/bin/python ops/bench_mqtt.py [--messages 200000] [--publishers 4] [--emulator]

Every phase uses a real Mosquitto with the shipped config (simulators/kit/broker.py)
and ~170-byte JSON payloads at QoS 1. Publishing uses ``ops/mqttload.py`` processes,
which count the broker's PUBACKs (``mosquitto_pub -l`` 2.0.11 disconnects early and
still exits 0; a paho publisher tops out at 10-16k msg/s).

1. backlog: both consumers' persistent sessions get the same N queued messages
   (as after an edge outage); then
   - baseline: one bare paho subscriber drains its queue, acking each message in on_message;
   - edge: the MQTT source + the real SpoolWriter (group commit, synchronous=FULL) drains
     its queue, PUBACK after commit. Ratio = edge / baseline.
2. live: the edge is connected while the publishers send N more: sustained broker -> spool.
3. --emulator: backlog drained by ``edge run`` (source + spool + forwarder) into the ZeroBus
   emulator: broker -> spool -> table.

Figures are noisy on a shared machine; compare the ratio, not the absolute numbers. The CPU
time per message (this process only: broker and publishers are other processes) is the
least noisy figure: 1e6 / cpu_us_per_msg is the rate one free core would sustain.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402

from edge.spool import SpoolReader  # noqa: E402
from ops.mqttload import bench_payloads  # noqa: E402
from simulators.kit.broker import Broker  # noqa: E402
from simulators.kit.mqtt import InProcessEdge, edge_config  # noqa: E402

SUB = {"topic": "plant/#", "json": {"value": "value", "timestamp": "ts", "quality": "quality", "unit": "unit"}}
SIGNALS = ["temperature", "pressure", "flow", "motor_speed", "motor_current", "parts", "alarm", "state"]


def publish(broker: Broker, n: int, procs: int, start: int = 0) -> float:
    """n messages over `procs` publisher processes (ops/mqttload.py); returns msg/s.

    Counts PUBACKs, not lines handed to a tool: a short count is an error.
    """
    per = n // procs
    t0 = time.perf_counter()
    ps = []
    for k in range(procs):
        user = f"sim{k % 4 + 1}"
        topic = f"plant/{user}/line{k % 3 + 1}/press1/{SIGNALS[k % len(SIGNALS)]}"
        ps.append(subprocess.Popen(
            [sys.executable, str(ROOT / "ops" / "mqttload.py"), "--port", str(broker.port), "--username", user,
             "--password-file", str(broker.password_file(user)), "--topic", topic, "--count", str(per),
             "--start", str(start + k * per), "--client-id", f"bench-pub-{k}-{start}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    acked = 0
    for p in ps:
        out, err = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"publisher failed (rc {p.returncode}): {out} {err}")
        acked += json.loads(out)["acked"]
    if acked != per * procs:
        raise RuntimeError(f"the broker acknowledged {acked} of {per * procs}")
    return acked / (time.perf_counter() - t0)


def make_session(broker: Broker, client_id: str) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    c.username_pw_set("edge", broker.password("edge"))
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    r, mid = c.subscribe("plant/#", qos=1)
    time.sleep(0.5)
    c.disconnect()
    c.loop_stop()


def drop_session(broker: Broker, client_id: str) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    c.username_pw_set("edge", broker.password("edge"))
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    time.sleep(0.3)
    c.disconnect()
    c.loop_stop()


def baseline_drain(broker: Broker, client_id: str, n: int, timeout: float) -> float:
    """A bare paho subscriber: loop_forever in a thread, PUBACK from on_message.

    Not loop_start(): with it, every ack() from a callback also writes paho's wake-up
    socketpair, which halves the rate here (26k vs 15k msg/s); the stronger baseline is
    the honest one.
    """
    got = [0]
    done = threading.Event()
    t0 = [0.0]

    def on_message(c, u, msg):
        if got[0] == 0:
            t0[0] = time.perf_counter()
        got[0] += 1
        c.ack(msg.mid, msg.qos)
        if got[0] >= n:
            done.set()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False, manual_ack=True)
    c.username_pw_set("edge", broker.password("edge"))
    c.on_message = on_message
    c.connect("127.0.0.1", broker.port)
    th = threading.Thread(target=c.loop_forever, daemon=True)
    th.start()
    done.wait(timeout)
    elapsed = time.perf_counter() - t0[0]
    c.disconnect()
    th.join(10)
    if got[0] < n:
        raise RuntimeError(f"baseline got {got[0]} of {n}")
    return n / elapsed


def spool_rows(path: str) -> int:
    try:
        with SpoolReader(path) as r:
            return r.stats()["next_seq"] - 1
    except Exception:
        return 0


def wait_rows(path: str, n: int, timeout: float) -> float:
    """Seconds from the first row to n rows."""
    deadline = time.monotonic() + timeout
    first = None
    while time.monotonic() < deadline:
        rows = spool_rows(path)
        if rows and first is None:
            first = time.perf_counter()
        if rows >= n:
            return time.perf_counter() - (first or time.perf_counter())
        time.sleep(0.02)
    raise RuntimeError(f"only {spool_rows(path)} of {n} rows after {timeout}s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=200_000, help="backlog size and live message count")
    ap.add_argument("--publishers", type=int, default=2, help="publisher processes")
    ap.add_argument("--batch-max", type=int, default=2000)
    ap.add_argument("--emulator", action="store_true", help="also drain through edge run + forwarder into the emulator")
    ap.add_argument("--skip-live", action="store_true")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--broker-set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a line of the shipped mosquitto.conf, e.g. autosave_interval=10000")
    a = ap.parse_args()
    n = a.messages - a.messages % a.publishers
    work = Path(tempfile.mkdtemp(prefix="bench-mqtt-"))
    overrides = dict(kv.split("=", 1) for kv in a.broker_set)
    broker = Broker(overrides=overrides).start()
    report: dict = {"messages": n, "payload_bytes": len(bench_payloads(1)[0]), "publishers": a.publishers,
                    "broker_overrides": overrides}
    try:
        cfg = edge_config(work / "edge", broker, subs=(SUB,), batch_max=a.batch_max)
        edge_client_id = f"zerobus-edge-{cfg.appliance_id}-{cfg.sources[0].name}"
        make_session(broker, "bench-baseline")
        make_session(broker, edge_client_id)
        report["fill_rate_two_sessions"] = round(publish(broker, n, a.publishers))
        print(f"backlog of {n} queued for both sessions at {report['fill_rate_two_sessions']} msg/s", flush=True)

        cpu0 = time.process_time()
        report["baseline_drain"] = round(baseline_drain(broker, "bench-baseline", n, a.timeout))
        report["baseline_cpu_us_per_msg"] = round((time.process_time() - cpu0) / n * 1e6, 1)
        print(f"baseline (bare paho, manual ack): {report['baseline_drain']} msg/s", flush=True)
        drop_session(broker, "bench-baseline")  # or the live phase would queue for it too

        cpu0 = time.process_time()
        edge = InProcessEdge(cfg)
        try:
            secs = wait_rows(cfg.spool.path, n, a.timeout)
            report["edge_backlog_drain"] = round(n / secs)
            report["edge_cpu_us_per_msg"] = round((time.process_time() - cpu0) / n * 1e6, 1)
            print(f"edge backlog drain broker -> spool: {report['edge_backlog_drain']} msg/s", flush=True)
            if not a.skip_live:
                time.sleep(0.5)
                base = spool_rows(cfg.spool.path)
                t0 = time.perf_counter()
                pub_rate = publish(broker, n, a.publishers, start=n)
                wait_rows_total = base + n
                deadline = time.monotonic() + a.timeout
                while spool_rows(cfg.spool.path) < wait_rows_total and time.monotonic() < deadline:
                    time.sleep(0.02)
                report["live_publish_rate"] = round(pub_rate)
                report["edge_live"] = round(n / (time.perf_counter() - t0))
                print(f"live: publishers {report['live_publish_rate']} msg/s, edge kept up at {report['edge_live']} msg/s",
                      flush=True)
            report["edge_counters"] = edge.source.stats()
        finally:
            edge.stop()
        report["ratio_edge_vs_baseline"] = round(report["edge_backlog_drain"] / report["baseline_drain"], 3)
        # CPU per message is what a busy shared machine distorts least: the core budget per message.
        report["cpu_ratio_edge_vs_baseline"] = round(report["edge_cpu_us_per_msg"] / report["baseline_cpu_us_per_msg"], 2)
        report["edge_msgs_per_core_second"] = round(1e6 / report["edge_cpu_us_per_msg"])

        if a.emulator:
            from simulators.kit.mqtt import EdgeProcess
            from simulators.kit.emulator import Emulator

            emu = Emulator().start()
            try:
                ep = EdgeProcess(work / "e2e", broker, emu)
                ep.config.write_text(ep.config.read_text().replace("value: $", "value: value"))
                ep.start()
                deadline = time.monotonic() + 60
                while "running: 1 source" not in ep.log_tail(50) and time.monotonic() < deadline:
                    time.sleep(0.1)
                time.sleep(1.0)
                ep.stop()  # the session exists now; queue a backlog for it
                publish(broker, n, a.publishers, start=2 * n)
                ep.start()
                t0 = None
                while time.monotonic() < deadline + a.timeout:
                    rows = emu.table_stats()["rows"]
                    if rows and t0 is None:
                        t0 = time.perf_counter()
                    if rows >= n:
                        break
                    time.sleep(0.1)
                report["edge_to_emulator_drain"] = round(n / (time.perf_counter() - t0))
                print(f"broker -> spool -> emulator (edge run): {report['edge_to_emulator_drain']} msg/s", flush=True)
                ep.stop()
            finally:
                emu.stop()
    finally:
        broker.cleanup()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
