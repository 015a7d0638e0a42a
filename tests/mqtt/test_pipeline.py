"""The pipeline's group window: ``batch_delay`` is the longest a message waits for company, not a fixed sleep.

The spool writer is replaced by futures resolved on the spot (the outermost edge), so
what is measured is the pipeline's own wait.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from pathlib import Path

from edge.config import parse
from edge.sources import mqtt as mqtt_source
from edge.sources.context import SourceContext
from edge.sources.mqtt.pipeline import Msg
from edge.sources.status import SourceStatus

DELAY = 1.0  # the largest batch_delay the config accepts: a fixed sleep of it cannot hide in the noise


def _pipeline(tmp_path: Path, batch_max: int):
    cfg = parse({"appliance_id": "a", "sources": [{
        "name": "m", "type": "mqtt", "batch_max": batch_max, "batch_delay": DELAY,
        "subscriptions": [{"topic": "plant/#", "format": "number"}]}]}, env={}).sources[0]
    groups: list[tuple[float, int]] = []
    arrived = threading.Event()

    def submit(items):
        groups.append((time.monotonic(), len(items)))
        arrived.set()
        f = concurrent.futures.Future()
        f.set_result(None)
        return f

    ctx = SourceContext("a", tmp_path, None, submit, None, None, SourceStatus("m", "mqtt", None))
    src = mqtt_source.Source(cfg, ctx)
    src.ack = lambda msgs: None
    return src.pipeline, groups, arrived


def _msg(i: int) -> Msg:
    return Msg(1, i, 1, f"plant/p{i}".encode(), b"1.5", False, 1)


def test_a_full_group_is_committed_at_once_and_a_lone_message_after_batch_delay_at_most(tmp_path):
    pipe, groups, arrived = _pipeline(tmp_path, batch_max=50)
    pipe.start()
    try:
        t0 = time.monotonic()
        for i in range(50):
            pipe.put(_msg(i))
        assert arrived.wait(10)
        assert groups[0][1] == 50
        assert groups[0][0] - t0 < DELAY / 2, f"a full group waited {groups[0][0] - t0:.2f}s"
        # A group that fills while the worker waits goes as soon as it is full.
        arrived.clear()
        t1 = time.monotonic()
        pipe.put(_msg(100))
        for i in range(101, 150):
            pipe.put(_msg(i))
        assert arrived.wait(10)
        assert groups[1][1] == 50 and groups[1][0] - t1 < DELAY / 2
        # Alone, a message waits for company, but not for ever.
        arrived.clear()
        t2 = time.monotonic()
        pipe.put(_msg(200))
        assert arrived.wait(10)
        assert groups[2][1] == 1 and DELAY * 0.9 <= groups[2][0] - t2 < DELAY * 3
    finally:
        pipe.stop(5)
