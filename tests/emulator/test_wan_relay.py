"""The drill's WAN delay on a kernel without netem: a delaying relay on the host and DNAT in the edge's namespace.

Real containers on a real Docker network: a sink that answers every byte at once, an "edge" that times
a round trip to it. ops/wan.Shaper tries netem first; where the kernel has none (this CI's Firecracker
kernel) the delay goes through ops/linkproxy.py, and either way the round trip grows by the delay.
"""

from __future__ import annotations

import os
import shutil
import uuid

import pytest

from ops import wan
from ops.composectl import docker, docker_available

IMAGE = os.environ.get("WAN_TEST_IMAGE", "zerobus-edge-local/bookworm-python:3.11")
SINK = ("import socket\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 443)); s.listen()\n"
        "while True:\n"
        "    c, _ = s.accept()\n"
        "    while (d := c.recv(65536)):\n"
        "        c.sendall(d)\n"
        "    c.close()\n")
PING = ("import socket, sys, time\n"
        "best = 9.0\n"
        "for _ in range(5):\n"
        "    c = socket.create_connection((sys.argv[1], 443), timeout=10)\n"
        "    c.recv(0)\n"
        "    t = time.monotonic(); c.sendall(b'x'); c.recv(1); best = min(best, time.monotonic() - t)\n"
        "    c.close()\n"
        "print(best)\n")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("nsenter") or not shutil.which("tc") or not docker_available(),
    reason="needs root, tc, nsenter and Docker")


@pytest.fixture
def net():
    if docker("image", "inspect", IMAGE, check=False).returncode != 0:
        pytest.skip(f"no {IMAGE} image here")
    name = f"zbwan{uuid.uuid4().hex[:8]}"
    docker("network", "create", name)
    made: list[str] = []

    def run(*cmd: str) -> str:
        cid = docker("run", "-d", "--rm", "--network", name, IMAGE, *cmd, timeout=120).stdout.strip()
        made.append(cid)
        return cid

    try:
        yield name, run
    finally:
        for cid in made:
            docker("rm", "-f", cid, check=False)
        docker("network", "rm", name, check=False)


def _sink_and_edge(name: str, run):
    """An echoing sink and an idle "edge" on the network, with what wan.Shaper needs to find them."""
    sink, edge = run("python3", "-c", SINK), run("sleep", "600")

    def inspect(container: str) -> tuple[str, str]:
        fmt = "{{.State.Pid}} {{with index .NetworkSettings.Networks \"%s\"}}{{.IPAddress}}{{end}}" % name
        pid, _, ip = docker("inspect", "-f", fmt, container).stdout.strip().partition(" ")
        return pid, ip

    def relay_target() -> tuple[str, int, str]:
        gw = docker("network", "inspect", "-f", "{{range .IPAM.Config}}{{.Gateway}} {{end}}", name).stdout.split()[0]
        return inspect(sink)[1], 443, gw

    return sink, edge, inspect, relay_target


def test_the_delay_reaches_the_round_trip_with_or_without_netem_and_is_undone(net):
    sink, edge, inspect, relay_target = _sink_and_edge(*net)

    def rtt() -> float:
        return float(docker("exec", edge, "python3", "-c", PING, inspect(sink)[1], timeout=60).stdout.strip())

    before = rtt()
    assert before < 0.1
    shaper = wan.Shaper(wan.Link(delay_ms=200, loss=1.0), inspect, relay_target)
    try:
        shaper.apply(edge)
        shaped = rtt()
        assert shaped >= 0.2, f"{shaped:.3f}s with the delay applied by {shaper.delay_by}"
        text = shaper.describe()
        if shaper.delay_by == wan.RELAY:  # this kernel has no netem
            assert "userspace TCP relay" in text and "iptables statistic" in text
            assert shaper.relay.bytes_up > 0
            shaper.apply(edge)  # again, as after a reconnect: one rule, not two
            nat = wan._ns(inspect(edge)[0], "iptables", "-t", "nat", "-S").stdout
            assert nat.count(f"-A {wan.RELAY_CHAIN} ") == 1 and nat.count(f"-A OUTPUT -j {wan.RELAY_CHAIN}") == 1
        else:
            assert "tc netem" in text
    finally:
        shaper.remove()
    assert rtt() < 0.1
    assert wan.RELAY_CHAIN not in wan._ns(inspect(edge)[0], "iptables", "-t", "nat", "-S").stdout


BULK = ("import socket, sys\n"
        "c = socket.create_connection((sys.argv[1], 443), timeout=60)\n"
        "data = bytes(range(256)) * 1024\n"
        "back = b''\n"
        "for _ in range(4):\n"
        "    c.sendall(data)\n"
        "    want = len(back) + len(data)\n"
        "    while len(back) < want:\n"
        "        back += c.recv(65536)\n"
        "print(len(back) if back == data * 4 else -1)\n")


def test_loss_without_netem_drops_uplink_packets_that_tcp_resends_and_is_undone(net):
    sink, edge, inspect, relay_target = _sink_and_edge(*net)

    shaper = wan.Shaper(wan.Link(loss=20.0), inspect, relay_target)
    try:
        shaper.apply(edge)
        if shaper.delay_by != wan.RELAY:
            pytest.skip("this kernel has netem: the loss is tc's, tested by the drill")
        out = docker("exec", edge, "python3", "-c", BULK, inspect(sink)[1], timeout=120).stdout.strip()
        assert int(out) == 4 * 256 * 1024  # every byte came back: TCP resent what the rule dropped
        assert shaper.loss_dropped() > 0
        assert "20% loss" in shaper.describe() and "iptables statistic" in shaper.describe()
    finally:
        shaper.remove()
    assert wan.LOSS_CHAIN not in wan.subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout
