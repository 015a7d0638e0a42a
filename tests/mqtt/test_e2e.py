"""End to end: simulator -> real Mosquitto (shipped config) -> `edge run` child process -> ZeroBus emulator.

Reconciliation is by the simulator's per-publisher sequence numbers, carried in
every reading (JSON ``seq`` in value_json, Sparkplug ``msg_seq`` metric): every
message the broker acknowledged to the simulator must land in the table.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections import Counter

import pytest

from simulators.kit.broker import Broker
from simulators.kit.mqtt import EdgeProcess, wait_until
from tests.mqtt.e2e import landed
from tests.mqtt.harness import acked_seqs, run_simulator, start_simulator

MAX_INFLIGHT = 1000  # the shipped max_inflight_messages: what one crash can make the broker redeliver


def wait_landed(emulator, expected: dict[str, set[int]], timeout: float, edge: EdgeProcess) -> dict[str, list[int]]:
    got: dict[str, list[int]] = {}

    def complete() -> bool:
        nonlocal got
        got = landed(emulator)
        return all(exp <= set(got.get(pub, [])) for pub, exp in expected.items())

    try:
        wait_until(complete, timeout, "every acknowledged message in the table", every=0.5)
    except AssertionError:
        missing = {p: len(e - set(got.get(p, []))) for p, e in expected.items()}
        raise AssertionError(f"missing per publisher: {missing}\nedge log:\n{edge.log_tail()}") from None
    return got


@pytest.mark.slow
def test_kill9_of_the_edge_mid_stream_loses_nothing(broker, emulator, tmp_path):
    edge = EdgeProcess(tmp_path / "edge", broker, emulator).start()
    try:
        wait_until(lambda: "running: 1 source" in edge.log_tail(50), 20, "edge up")
        # Written after the broker's SUBACK: from here on the broker queues for our session.
        subs = edge.workdir / "data" / "sources" / "mqtt1" / "mqtt-subscriptions.json"
        wait_until(subs.exists, 20, "subscribed (the session exists)")
        sims = {
            "sim1": start_simulator(broker, "sim1", tmp_path / "sim1.json", count=8000, rate=1600),
            "sim2": start_simulator(broker, "sim2", tmp_path / "sim2.json", count=3000, rate=600, flavour="sparkplug"),
        }
        rng = random.Random(7)
        kills = 0
        while any(p.poll() is None for p in sims.values()) and kills < 3:
            time.sleep(rng.uniform(0.8, 1.6))
            edge.kill()
            kills += 1
            time.sleep(rng.uniform(0.1, 0.5))
            edge.start()
        for p in sims.values():
            assert p.wait(180) == 0, p.stderr.read().decode()
        counters = {pub: json.loads((tmp_path / f"{pub}.json").read_text()) for pub in sims}
        expected = {pub: acked_seqs(c) for pub, c in counters.items()}
        assert len(expected["sim1"]) == 8000
        got = wait_landed(emulator, expected, 90, edge)
        for pub, exp in expected.items():
            seqs = got[pub]
            assert set(seqs) == exp, f"{pub}: unexpected seqs {sorted(set(seqs) - exp)[:10]}"
            dups = len(seqs) - len(set(seqs))
            # Redelivered after a crash: at most the in-flight window per kill (the broker's limit).
            assert dups <= kills * MAX_INFLIGHT, (pub, dups)
        assert kills == 3
        # Spool seqs never repeat: the table's own key is unique (the forwarder's duplicates are 0 or bounded).
        st = emulator.table_stats()
        assert st["appliances"]["edge-e2e"]["unexplained_missing_count"] == 0
        # Sparkplug DDATA by alias stayed resolvable across the kills (aliases saved before the BIRTH ack).
        from edge.spool import SpoolReader

        with SpoolReader(edge.workdir / "data" / "spool.db") as r:
            assert r.quarantined(10) == []
        print(f"kills={kills} dup rows by MQTT redelivery: "
              f"{ {p: len(got[p]) - len(set(got[p])) for p in got} }, dup keys in table: {st['duplicates']}")
    finally:
        edge.stop()


def test_messages_published_while_the_edge_is_down_arrive_after_restart(broker, emulator, tmp_path):
    edge = EdgeProcess(tmp_path / "edge", broker, emulator).start()
    try:
        wait_until(lambda: "connected" in _source_state(edge), 20, "first connect (creates the session)")
        edge.stop()
        sent = run_simulator(broker, "sim1", count=4000, rate=4000)
        sent_sp = run_simulator(broker, "sim2", count=500, rate=2000, flavour="sparkplug")
        # The edge is down: nothing of what was just published can have reached the table yet.
        assert landed(emulator) == {}
        edge.start()
        got = wait_landed(emulator, {"sim1": acked_seqs(sent), "sim2": acked_seqs(sent_sp)}, 60, edge)
        assert Counter(got["sim1"]) == Counter(acked_seqs(sent))  # clean stop: not even a duplicate
    finally:
        edge.stop()


def _source_state(edge: EdgeProcess) -> str:
    from edge.spool import SpoolReader

    path = edge.workdir / "data" / "spool.db"
    if not path.exists():
        return ""
    try:
        with SpoolReader(path) as r:
            return json.dumps(r.states("source"))
    except Exception:
        return ""


def _autosave_interval() -> int:
    conf = (Broker.__module__ and __import__("simulators.kit.broker", fromlist=["SHIPPED"]).SHIPPED / "mosquitto.conf").read_text()
    return int(re.search(r"^autosave_interval (\d+)$", conf, re.M).group(1))


@pytest.mark.parametrize("how", ["kill9", "sigterm"])
def test_broker_restart_keeps_the_queue_of_the_offline_edge(broker, emulator, tmp_path, how):
    """The broker's own durability with the shipped settings.

    kill -9: what the broker acknowledged since its last autosave (at most
    autosave_interval changes) is lost - mosquitto acknowledges before it
    persists. A clean stop saves everything.
    """
    edge = EdgeProcess(tmp_path / "edge", broker, emulator).start()
    window = _autosave_interval()
    count = window + 3500  # past one save: the kill -9 must have something saved to keep
    try:
        wait_until(lambda: "connected" in _source_state(edge), 20, "first connect (creates the session)")
        edge.stop()
        sent = run_simulator(broker, "sim1", count=count, rate=8000)
        assert sent["acked"] == count
        time.sleep(0.5)
        if how == "kill9":
            broker.kill()
        else:
            broker.stop()
        broker.start()
        edge.start()
        exp = acked_seqs(sent)
        if how == "sigterm":
            got = wait_landed(emulator, {"sim1": exp}, 60, edge)
            assert set(got["sim1"]) == exp
            return
        # After kill -9: wait for the stream to settle, then count.
        last = [-1]

        def settled() -> bool:
            n = len(set(landed(emulator).get("sim1", [])))
            done = n == last[0] and n > 0
            last[0] = n
            return done

        wait_until(settled, 60, "the backlog to drain", every=2.0)
        got = set(landed(emulator).get("sim1", []))
        lost = exp - got
        print(f"broker kill -9: {len(lost)} of {len(exp)} acknowledged messages lost (autosave_interval {window})")
        assert len(lost) <= window
        # What was lost is the newest tail (after the last save), never a hole in the middle.
        if lost:
            assert min(lost) > max(got)
    finally:
        edge.stop()
