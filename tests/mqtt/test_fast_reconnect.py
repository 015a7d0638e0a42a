"""A broker back after an outage is reconnected within about a second, not after the backoff.

The backoff is 30 s without jitter (the old behaviour is certain: the next attempt 30 s after the
loss); the supervisor probes the broker's TCP port while it waits and reconnects when it answers."""

from __future__ import annotations

import time

import pytest

import edge.backoff
from simulators.kit.mqtt import InProcessEdge, edge_config, wait_until

pytestmark = pytest.mark.timeout(120)


def test_reconnects_within_two_seconds_of_the_broker_answering_despite_a_30s_backoff(broker, tmp_path, monkeypatch):
    # Every delay is its ceiling (the outermost edge: the random draw).
    monkeypatch.setattr(edge.backoff, "full_jitter",
                        lambda attempt, initial, cap, rand: edge.backoff.ceiling(attempt, initial, cap))
    app = InProcessEdge(edge_config(tmp_path, broker, reconnect_initial="30s", reconnect_max="30s"))
    try:
        app.wait_state("connected")
        broker.kill()
        wait_until(lambda: app.state()["state"] != "connected", 10, "the broker's absence to show")
        down_at = time.monotonic()
        # Down for a while: the supervisor is inside its 30 s wait, probing a closed port.
        wait_until(lambda: time.monotonic() - down_at > 3, 10, "the outage", every=0.1)
        broker.start()
        answered = time.monotonic()
        app.wait_state("connected", 20)
        took = time.monotonic() - answered
    finally:
        app.stop()
    print(f"reconnected {took:.2f} s after the broker answered (backoff 30 s)")
    assert took < 2.5, f"reconnected only {took:.1f} s after the broker answered"
