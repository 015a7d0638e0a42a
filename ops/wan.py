"""A plant's uplink for the drill: shape the edge's egress interface with tc.

The appliance gets no capability for this: the host enters the edge container's
network namespace (``nsenter -t <pid> -n``) and runs its own ``tc`` there, on
the interface of the egress network:

    root  netem  delay D loss L      (latency and loss of the WAN)
    1:1   tbf    rate R burst ...    (the link's capacity)

A rate alone needs only tbf (at the root). Some kernels are built without netem
(CONFIG_NET_SCH_NETEM; a Firecracker VM's, for one: "Specified qdisc kind is
unknown"). There the delay is made in user space instead: a delaying TCP relay
(ops/linkproxy.py) on the host, at the egress network's gateway address, and a
DNAT rule in the edge's network namespace that sends its connections to the sink
(``relay_target``: the emulator's address and port on that network) through it;
the rate stays with tbf on the interface. The relay holds each byte for the
delay, pipelined, as netem does. A relay sees a byte stream, not packets, so the
loss is made on the host in front of it: iptables' statistic match drops that
fraction of the uplink's packets arriving at the relay's port (chain
ZB_WAN_LOSS, hooked into the host's INPUT), which the edge's TCP sees as loss on
the wire and retransmits. Without netem and without a relay target (a real
workspace), a delay or a loss is refused by name.

Only the uplink (edge -> ZeroBus) is shaped, the direction a drain fills; so the
round trip grows by D. A network disconnect or a restart of the container makes
a new interface: the drill applies the link again after each. Needs root.

Pure parts (rates, the link's capacity in readings/s, the report lines) sit apart
from the two functions that run commands, and are tested without Docker.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass

_UNITS = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "kibit": 1024, "mibit": 1024 ** 2, "gibit": 1024 ** 3}


class WanError(RuntimeError):
    pass


def rate_bps(text: str) -> float:
    """tc's rate spelling (``20mbit``, ``512kbit``, ``1gbit``) in bits per second."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", text.lower())
    if not m or m.group(2) not in _UNITS:
        raise ValueError(f"not a tc rate: {text!r} (examples: 20mbit, 512kbit, 1gbit)")
    value = float(m.group(1)) * _UNITS[m.group(2)]
    if value <= 0:
        raise ValueError(f"a link rate must be positive, not {text!r}")
    return value


def loss_pct(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%?\s*", text)
    if not m or float(m.group(1)) >= 100:
        raise ValueError(f"not a loss percentage: {text!r} (example: 0.1%)")
    return float(m.group(1))


NETEM, RELAY = "netem", "relay"  # how the delay is made
RELAY_CHAIN = "ZB_WAN_DELAY"
LOSS_CHAIN = "ZB_WAN_LOSS"


@dataclass(frozen=True)
class Link:
    delay_ms: float = 0.0
    rate: str | None = None  # tc spelling; None = not rate-limited
    loss: float = 0.0  # percent

    @property
    def shaped(self) -> bool:
        return bool(self.delay_ms or self.rate or self.loss)

    def describe(self, delay_by: str = NETEM) -> str:
        parts = [f"{rate_bps(self.rate) / 1e6:g} Mbit/s" if self.rate else "unlimited rate",
                 f"+{self.delay_ms:g} ms round trip", f"{self.loss:g}% loss"]
        if delay_by == RELAY:
            how = ["the delay by a userspace TCP relay (no netem in this kernel)"] if self.delay_ms else []
            how += ["the loss by iptables statistic on the packets reaching the relay"] if self.loss else []
            how += ["tc tbf for the rate"] if self.rate else []
            return ", ".join(parts) + f" (uplink shaped with {' + '.join(how) or 'nothing'})"
        qdiscs = " + ".join(q for q, on in (("netem", self.needs_netem), ("tbf", self.rate)) if on)
        return ", ".join(parts) + f" (uplink shaped with tc {qdiscs})"

    @property
    def needs_netem(self) -> bool:
        return bool(self.delay_ms or self.loss)

    def tc_commands(self, dev: str, netem: bool = True) -> list[list[str]]:
        """The qdiscs; ``netem=False`` (the kernel has none): tbf alone, the delay made elsewhere."""
        cmds = []
        if self.needs_netem and netem:
            netem = ["tc", "qdisc", "add", "dev", dev, "root", "handle", "1:", "netem",
                     "delay", f"{self.delay_ms:g}ms", "limit", "100000"]
            if self.loss:
                netem += ["loss", f"{self.loss:g}%"]
            cmds.append(netem)
        if self.rate:
            bps = rate_bps(self.rate)
            # burst: at least one MTU and ~4 ms at the rate (tbf needs rate/HZ); queue: ~200 ms at the rate.
            burst = max(16 * 1024, int(bps / 8 * 0.004))
            where = ["parent", "1:1", "handle", "10:"] if self.needs_netem and netem else ["root", "handle", "1:"]
            cmds.append(["tc", "qdisc", "add", "dev", dev, *where, "tbf",
                         "rate", self.rate, "burst", str(burst), "latency", "200ms"])
        return cmds


def relay_commands(sink_ip: str, sink_port: int, relay_ip: str, relay_port: int) -> list[list[str]]:
    """iptables in the edge's namespace: its connections to the sink go to the delaying relay instead.

    One chain of our own, flushed and refilled on every apply, hooked once into nat OUTPUT."""
    return [
        ["iptables", "-t", "nat", "-N", RELAY_CHAIN],  # exists already after a reconnect: an error, ignored
        ["iptables", "-t", "nat", "-F", RELAY_CHAIN],
        ["iptables", "-t", "nat", "-A", RELAY_CHAIN, "-p", "tcp", "-d", sink_ip, "--dport", str(sink_port),
         "-j", "DNAT", "--to-destination", f"{relay_ip}:{relay_port}"],
        ["iptables", "-t", "nat", "-C", "OUTPUT", "-j", RELAY_CHAIN],  # hooked already?
    ]


def loss_commands(relay_ip: str, relay_port: int, loss_pct_: float) -> list[list[str]]:
    """iptables on the host: drop that share of the uplink's packets arriving at the relay.

    One chain of our own, flushed and refilled on every apply, hooked once into INPUT."""
    return [
        ["iptables", "-N", LOSS_CHAIN],  # exists already after a reconnect: an error, ignored
        ["iptables", "-F", LOSS_CHAIN],
        ["iptables", "-A", LOSS_CHAIN, "-p", "tcp", "-d", relay_ip, "--dport", str(relay_port),
         "-m", "statistic", "--mode", "random", "--probability", f"{loss_pct_ / 100:.6f}", "-j", "DROP"],
        ["iptables", "-C", "INPUT", "-j", LOSS_CHAIN],  # hooked already?
    ]


def loss_undo_commands() -> list[list[str]]:
    return [["iptables", "-D", "INPUT", "-j", LOSS_CHAIN], ["iptables", "-F", LOSS_CHAIN], ["iptables", "-X", LOSS_CHAIN]]


def relay_undo_commands() -> list[list[str]]:
    return [["iptables", "-t", "nat", "-D", "OUTPUT", "-j", RELAY_CHAIN],
            ["iptables", "-t", "nat", "-F", RELAY_CHAIN], ["iptables", "-t", "nat", "-X", RELAY_CHAIN]]


def capacity_readings_per_s(rate: str, wire_bytes_per_reading: float) -> float:
    """What the link carries, in readings/s, at the bytes each reading took on the wire."""
    return rate_bps(rate) / 8 / wire_bytes_per_reading


def link_figures(link: Link, sent_bytes: int | None, delivered: int, drain_s: float | None,
                 delay_by: str = NETEM) -> dict:
    """The drain against the link: wire bytes per reading, the link's capacity, the fraction used."""
    out: dict = {"link": link.describe(delay_by), "delay_by": delay_by if link.delay_ms else None,
                 "loss_emulated": bool(link.loss), "loss_by": (delay_by if link.loss else None),
                 "sent_bytes": sent_bytes, "delivered_during_drain": delivered}
    if not sent_bytes or delivered <= 0:
        return out
    per = sent_bytes / delivered
    out["wire_bytes_per_reading"] = round(per, 1)
    if not drain_s:  # the drain was not timed: its bytes per reading are all that is known
        return out
    out["delivered_rate"] = round(delivered / drain_s, 1)
    out["wire_rate_bps"] = round(sent_bytes * 8 / drain_s)
    if link.rate:
        cap = capacity_readings_per_s(link.rate, per)
        out["binding_limit"] = f"link: {rate_bps(link.rate) / 1e6:g} Mbit/s = {cap:.0f} readings/s at {per:.0f} B/reading"
        out["binding_limit_rate"] = round(cap, 1)
        out["fraction_of_limit"] = round(out["delivered_rate"] / cap, 3)
    return out


def render(fig: dict) -> list[str]:
    lines = [f"  wan link            {fig['link']}"]
    if "wire_bytes_per_reading" in fig:
        rate = f", {fig['wire_rate_bps'] / 1e6:.2f} Mbit/s" if "wire_rate_bps" in fig else " (the drain was not timed)"
        lines.append(f"  on the wire         {fig['sent_bytes']} B for {fig['delivered_during_drain']} readings = "
                     f"{fig['wire_bytes_per_reading']:.0f} B/reading{rate}")
    if "binding_limit" in fig:
        lines.append(f"  binding limit       {fig['binding_limit']}")
        lines.append(f"  drain vs limit      {fig['delivered_rate']:.0f} readings/s delivered = "
                     f"{fig['fraction_of_limit']:.2f} of the limit")
    if "drain_over_ingest" in fig:
        lines.append(f"  drain / ingest      {fig['drain_over_ingest']:.1f}x ({fig['ingest_rate']:.0f} readings/s collected)")
    return lines


# -- the parts that run commands (root, on the Docker host) -------------------------


def _ns(pid: str, *cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(["nsenter", "-t", pid, "-n", *cmd], capture_output=True, text=True, timeout=30)


class Shaper:
    """Applies a Link on the egress interface of a container (found by its IP on that network).

    ``relay_target``: () -> (sink ip, sink port, gateway ip) on the egress network, for the delay
    without netem (None: a delay is refused there). ``delay_by`` says which mechanism is in use."""

    def __init__(self, link: Link, inspect, relay_target=None):
        self.link = link
        self.inspect = inspect  # (container) -> (pid, ip on the egress network)
        self.relay_target = relay_target
        self.delay_by = NETEM
        self.relay = None  # the LinkProxy, once the kernel said it has no netem
        self.last_container: str | None = None
        self.banked = self.base = 0
        if os.geteuid() != 0:
            raise WanError("shaping the WAN needs root (tc inside the edge's network namespace, via nsenter)")
        for tool in ("tc", "nsenter", "ip"):
            if not shutil.which(tool):
                raise WanError(f"shaping the WAN needs `{tool}` on the host (iproute2, util-linux)")

    def describe(self) -> str:
        return self.link.describe(self.delay_by)

    def _no_netem(self) -> None:
        """The kernel refused netem: make the delay and the loss at the relay, or refuse by name."""
        if self.relay_target is None:
            raise WanError("this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM) and no relay target is known "
                           "(a real workspace): --wan-delay-ms and --wan-loss cannot be applied here; "
                           "--wan-rate alone works (tbf)")
        if not shutil.which("iptables"):
            raise WanError("this kernel has no netem qdisc: the delay and the loss need the relay, and the relay `iptables`")
        self.delay_by = RELAY

    def _apply_relay(self, pid: str) -> None:
        sink_ip, sink_port, gateway = self.relay_target()
        if self.relay is None:
            from ops.linkproxy import LinkProxy

            self.relay = LinkProxy(sink_ip, sink_port, up_delay_ms=self.link.delay_ms, listen_host=gateway).start()
        self.relay.target = (sink_ip, sink_port)  # a recreated sink may have a new address
        for cmd in relay_commands(sink_ip, sink_port, gateway, self.relay.port):
            proc = _ns(pid, *cmd)
            if proc.returncode != 0 and "-N" not in cmd:
                if "-C" in cmd:
                    proc = _ns(pid, "iptables", "-t", "nat", "-A", "OUTPUT", "-j", RELAY_CHAIN)
                if proc.returncode != 0:
                    raise WanError(f"{' '.join(cmd)}: {proc.stderr.strip()}")
        if self.link.loss:
            self._apply_loss(gateway, self.relay.port)

    def _apply_loss(self, relay_ip: str, relay_port: int) -> None:
        for cmd in loss_commands(relay_ip, relay_port, self.link.loss):
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            if proc.returncode != 0 and "-N" not in cmd:
                if "-C" in cmd:
                    proc = subprocess.run(["iptables", "-A", "INPUT", "-j", LOSS_CHAIN],
                                          capture_output=True, text=True, timeout=30)
                if proc.returncode != 0:
                    raise WanError(f"{' '.join(cmd)}: {proc.stderr.strip()}")

    def loss_dropped(self) -> int | None:
        """Packets the loss rule dropped so far (None: no loss rule on this host)."""
        proc = subprocess.run(["iptables", "-L", LOSS_CHAIN, "-v", "-n", "-x"], capture_output=True, text=True, timeout=30)
        rows = [line.split() for line in proc.stdout.splitlines()[2:] if "DROP" in line]
        return sum(int(r[0]) for r in rows) if proc.returncode == 0 else None

    def _dev(self, container: str) -> tuple[str, str]:
        pid, ip = self.inspect(container)
        if not ip:
            raise WanError(f"{container[:12]} has no address on the egress network")
        out = _ns(pid, "ip", "-o", "-4", "addr", "show")
        for line in out.stdout.splitlines():
            fields = line.split()
            if len(fields) > 3 and fields[3].split("/")[0] == ip:
                return pid, fields[1].split("@")[0]
        raise WanError(f"no interface with {ip} in {container[:12]}'s network namespace")

    def apply(self, container: str, count_from_here: bool = False) -> str:
        """Shape the container's egress interface (again: a reconnect or restart makes a new one)."""
        pid, dev = self._dev(container)
        self.last_container = container
        _ns(pid, "tc", "qdisc", "del", "dev", dev, "root")  # whatever was there (none: an error, ignored)
        cmds = self.link.tc_commands(dev, netem=self.delay_by == NETEM)
        for cmd in cmds:
            proc = _ns(pid, *cmd)
            if proc.returncode != 0:
                if "netem" in cmd and "unknown" in proc.stderr:
                    self._no_netem()
                    return self.apply(container, count_from_here)
                raise WanError(f"{' '.join(cmd)}: {proc.stderr.strip()}")
        if self.delay_by == RELAY:
            self._apply_relay(pid)
        if count_from_here:
            self.banked, self.base = 0, self.sent_bytes(container) or 0
        return dev

    def bank(self, container: str) -> None:
        """Keep the bytes sent so far: the interface (and its counters) is about to go (a kill)."""
        if self.delay_by == RELAY:
            return  # the relay's counter outlives the interface: nothing to bank
        self.banked += (self.sent_bytes(container) or 0) - self.base
        self.base = 0

    def sent_total(self, container: str) -> int:
        """Uplink bytes since apply(count_from_here=True), across interface changes banked meanwhile."""
        return self.banked + (self.sent_bytes(container) or 0) - self.base

    def sent_bytes(self, container: str) -> int | None:
        """Bytes the shaped root qdisc sent since it was applied (None if it is gone); with the relay,
        the bytes it carried up (TCP payload: TLS records, no IP/TCP headers). The qdisc's counter
        on a reconnected interface was seen missing most of a drain (9 B/reading), the relay's not."""
        if self.delay_by == RELAY:  # every byte to the sink passes the relay: count there, whatever the interface
            return self.relay.bytes_up if self.relay is not None else None
        try:
            pid, dev = self._dev(container)
        except WanError:
            return None
        proc = _ns(pid, "tc", "-s", "-j", "qdisc", "show", "dev", dev)
        try:
            qdiscs = json.loads(proc.stdout or "[]")
        except ValueError:
            return None
        root = next((q for q in qdiscs if q.get("root") and q.get("kind") in ("netem", "tbf")), None)
        return int(root["bytes"]) if root and "bytes" in root else None

    def remove(self, container: str | None = None) -> None:
        """Undo everything (idempotent: the drill calls it again on every exit path)."""
        container = container or self.last_container
        try:
            if container is not None:
                pid, dev = self._dev(container)
                _ns(pid, "tc", "qdisc", "del", "dev", dev, "root")
                if self.delay_by == RELAY:
                    for cmd in relay_undo_commands():
                        _ns(pid, *cmd)
        except WanError:
            pass  # the container or its interface is gone: nothing left to undo there
        finally:
            if self.delay_by == RELAY:
                for cmd in loss_undo_commands():
                    subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            if self.relay is not None:
                self.relay.stop()
                self.relay = None
