"""The collector's one rule, checked against an adversarial spool: a PUBACK never precedes the
commit of its message, acks go out in arrival order, once each, and a refused (SpoolFull)
commit is retried until it lands - never acked without it.

The spool writer is replaced here (and only here) by futures the test resolves in random
order, some with SpoolFull: the outermost edge, to inject exactly those orders.
"""

from __future__ import annotations

import concurrent.futures
import json
import random
import threading
import time
from pathlib import Path

import pytest

from edge.config import parse
from edge.sources import mqtt as mqtt_source
from edge.sources.context import SourceContext
from edge.sources.mqtt.pipeline import Msg
from edge.sources.status import SourceStatus
from edge.writer import SpoolFull


class FakeClient:
    def __init__(self, on_ack):
        self.on_ack = on_ack

    def _packet_queue(self, command, packet, mid, qos):
        assert command == 0x40
        self.on_ack([int.from_bytes(packet[i + 2:i + 4], "big") for i in range(0, len(packet), 4)])


@pytest.mark.parametrize("seed", range(6))
def test_acks_follow_commits_in_order_under_random_completion_and_spool_full(tmp_path: Path, seed: int):
    rng = random.Random(seed)
    cfg = parse({"appliance_id": "a", "sources": [{
        "name": "m", "type": "mqtt", "batch_max": rng.choice([1, 7, 50]), "batch_delay": rng.choice([0, 0.002]),
        "subscriptions": [{"topic": "plant/#"}]}]}, env={}).sources[0]
    lock = threading.Lock()
    pending: list[tuple[concurrent.futures.Future, list[int]]] = []
    committed: set[int] = set()  # message ids whose readings are "committed"
    quarantined: set[int] = set()
    acked: list[int] = []
    tries = {"full": 0}

    def submit(items):
        f = concurrent.futures.Future()
        mids = [json.loads(body[body.index(b"{"):body.rindex(b"}") + 1])["mid"] for _, body in items]
        with lock:
            pending.append((f, mids))
        return f

    def quarantine(source, reason, raw, meta):
        f = concurrent.futures.Future()
        with lock:
            pending.append((f, [-int(meta["topic"].rsplit("/", 1)[1])]))
        return f

    def on_ack(mids):
        with lock:
            for mid in mids:
                assert mid in committed or mid in quarantined, f"PUBACK {mid} before its commit"
            acked.extend(mids)

    ctx = SourceContext("a", tmp_path, None, submit, quarantine, None, SourceStatus("m", "mqtt", None))
    src = mqtt_source.Source(cfg, ctx)
    src.session.client = FakeClient(on_ack)
    src.session.up, src.session.gen = True, 1
    src.wait_for_space = lambda timeout: time.sleep(0.005)
    pipe = src.pipeline
    pipe.start()
    n = 400
    bad = set(rng.sample(range(1, n + 1), 20))
    try:
        for mid in range(1, n + 1):
            # The value is a string holding {"mid": N}: submit() finds it again inside the encoded body.
            payload = b"{not json" if mid in bad else json.dumps({"value": json.dumps({"mid": mid})}).encode()
            pipe.put(Msg(1, mid, 1, f"plant/x/{mid}".encode(), payload, False, 1))
            if rng.random() < 0.3:
                time.sleep(0.0005)
        deadline = time.monotonic() + 30
        while len(acked) < n and time.monotonic() < deadline:
            with lock:
                batch = pending[:]
                pending.clear()
            rng.shuffle(batch)
            for f, mids in batch:
                if rng.random() < 0.25:
                    tries["full"] += 1
                    f.set_exception(SpoolFull("budget", "spool full"))
                    continue
                with lock:
                    for mid in mids:
                        (quarantined.add(-mid) if mid < 0 else committed.add(mid))
                f.set_result(None)
            time.sleep(0.002)
    finally:
        pipe.stop(5)
    assert acked == list(range(1, n + 1))  # all, once each, in arrival order
    assert quarantined == bad
    assert tries["full"] > 0
