"""A forwarder backing off after a cut retries as soon as the uplink answers again (edge/forward/reach.py)."""

from __future__ import annotations

import random
import socket
import threading
import time

from edge.backoff import Backoff
from edge.forward import Forwarder
from edge.forward.reach import Reach, tcp_answers, uplink_target
from simulators.kit.ports import free_port
from tests.forwarder.conftest import APP, make_cfg, wait_for


class _Longest(random.Random):
    """Full jitter drawn at its top: every delay is the whole ceiling (30 s here)."""

    def random(self) -> float:
        return 0.999


def test_a_cut_uplink_is_retried_as_soon_as_it_answers_not_after_the_backoff(rig):
    rig.emu.set_faults({"down": True})  # the gRPC port closed: the uplink does not answer
    res = rig.append(200)
    fwd = Forwarder(make_cfg(rig.emu), appliance_id=APP, spool_path=str(rig.path), writer=rig.writer,
                    backoff=Backoff(30.0, 30.0, rng=_Longest()))
    rig.fwd = fwd
    rig.writer.on_commit = fwd.notify
    fwd.start()
    wait_for(lambda: fwd.state()["state"] == "backing_off", what="the first failure's backoff")
    t0 = time.monotonic()
    rig.emu.set_faults({"down": False})
    rig.wait_delivered(res.last_seq, timeout=10)  # was: the rest of a 30 s backoff
    took = time.monotonic() - t0
    print(f"uplink back -> backlog delivered in {took:.2f}s (backoff 30 s)")
    assert took < 10


def test_an_uplink_that_answers_at_the_start_waits_the_whole_delay(tmp_path, rig):
    """It answered as the wait began: the failure was not about reaching it (a refused token, the service)."""
    fwd = Forwarder(make_cfg(rig.emu), appliance_id=APP, spool_path=str(rig.path), writer=rig.writer)
    calls = []

    def probe():
        calls.append(time.monotonic())
        return True

    t0 = time.monotonic()
    fwd._sleep(3.0, probe=probe)
    assert time.monotonic() - t0 >= 3.0 and len(calls) == 1  # probed once, then the whole delay


def test_an_unanswering_uplink_ends_the_wait_when_it_answers(rig):
    fwd = Forwarder(make_cfg(rig.emu), appliance_id=APP, spool_path=str(rig.path), writer=rig.writer)
    answers = iter([False, False, True])
    t0 = time.monotonic()
    fwd._sleep(20.0, probe=lambda: next(answers))
    assert time.monotonic() - t0 < 5  # two wake-ups of about a second, not 20 s


def test_tcp_answers_and_the_target_follows_the_proxy():
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        assert tcp_answers("127.0.0.1", port)
        assert Reach(f"https://127.0.0.1:{port}", env={}).probe() is True
    assert not tcp_answers("127.0.0.1", free_port())
    assert uplink_target("https://ws.zerobus.example:443", {}) == ("ws.zerobus.example", 443)
    proxied = {"https_proxy": "http://proxy.plant:3128"}
    assert uplink_target("https://ws.zerobus.example", proxied) == ("proxy.plant", 3128)
    assert uplink_target("https://ws.zerobus.example", {**proxied, "no_proxy": ".example"}) == ("ws.zerobus.example", 443)


def test_a_resolver_that_hangs_does_not_hold_the_probe(monkeypatch):
    release = threading.Event()

    def hang(*a, **kw):
        release.wait(10)
        raise OSError("late")

    monkeypatch.setattr(socket, "create_connection", hang)
    t0 = time.monotonic()
    try:
        assert tcp_answers("stuck.example", 443, timeout=0.5) is False
        assert time.monotonic() - t0 < 2
    finally:
        release.set()
