"""A plant's uplink for the drill: shape the edge's egress interface with tc.

The appliance gets no capability for this: the host enters the edge container's
network namespace (``nsenter -t <pid> -n``) and runs its own ``tc`` there, on
the interface of the egress network:

    root  netem  delay D loss L      (latency and loss of the WAN)
    1:1   tbf    rate R burst ...    (the link's capacity)

A rate alone needs only tbf (at the root). Some kernels are built without netem
(CONFIG_NET_SCH_NETEM): there a delay or a loss is refused with that reason
rather than silently left out.

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


@dataclass(frozen=True)
class Link:
    delay_ms: float = 0.0
    rate: str | None = None  # tc spelling; None = not rate-limited
    loss: float = 0.0  # percent

    @property
    def shaped(self) -> bool:
        return bool(self.delay_ms or self.rate or self.loss)

    def describe(self) -> str:
        parts = [f"{rate_bps(self.rate) / 1e6:g} Mbit/s" if self.rate else "unlimited rate",
                 f"+{self.delay_ms:g} ms round trip", f"{self.loss:g}% loss"]
        qdiscs = " + ".join(q for q, on in (("netem", self.needs_netem), ("tbf", self.rate)) if on)
        return ", ".join(parts) + f" (uplink shaped with tc {qdiscs})"

    @property
    def needs_netem(self) -> bool:
        return bool(self.delay_ms or self.loss)

    def tc_commands(self, dev: str) -> list[list[str]]:
        cmds = []
        if self.needs_netem:
            netem = ["tc", "qdisc", "add", "dev", dev, "root", "handle", "1:", "netem",
                     "delay", f"{self.delay_ms:g}ms", "limit", "100000"]
            if self.loss:
                netem += ["loss", f"{self.loss:g}%"]
            cmds.append(netem)
        if self.rate:
            bps = rate_bps(self.rate)
            # burst: at least one MTU and ~4 ms at the rate (tbf needs rate/HZ); queue: ~200 ms at the rate.
            burst = max(16 * 1024, int(bps / 8 * 0.004))
            where = ["parent", "1:1", "handle", "10:"] if self.needs_netem else ["root", "handle", "1:"]
            cmds.append(["tc", "qdisc", "add", "dev", dev, *where, "tbf",
                         "rate", self.rate, "burst", str(burst), "latency", "200ms"])
        return cmds


def capacity_readings_per_s(rate: str, wire_bytes_per_reading: float) -> float:
    """What the link carries, in readings/s, at the bytes each reading took on the wire."""
    return rate_bps(rate) / 8 / wire_bytes_per_reading


def link_figures(link: Link, sent_bytes: int | None, delivered: int, drain_s: float | None) -> dict:
    """The drain against the link: wire bytes per reading, the link's capacity, the fraction used."""
    out: dict = {"link": link.describe(), "sent_bytes": sent_bytes, "delivered_during_drain": delivered}
    if not sent_bytes or delivered <= 0 or not drain_s:
        return out
    per = sent_bytes / delivered
    out["wire_bytes_per_reading"] = round(per, 1)
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
        lines.append(f"  on the wire         {fig['sent_bytes']} B for {fig['delivered_during_drain']} readings = "
                     f"{fig['wire_bytes_per_reading']:.0f} B/reading, {fig['wire_rate_bps'] / 1e6:.2f} Mbit/s")
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
    """Applies a Link on the egress interface of a container (found by its IP on that network)."""

    def __init__(self, link: Link, inspect):
        self.link = link
        self.inspect = inspect  # (container) -> (pid, ip on the egress network)
        self.banked = self.base = 0
        if os.geteuid() != 0:
            raise WanError("shaping the WAN needs root (tc inside the edge's network namespace, via nsenter)")
        for tool in ("tc", "nsenter", "ip"):
            if not shutil.which(tool):
                raise WanError(f"shaping the WAN needs `{tool}` on the host (iproute2, util-linux)")

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
        _ns(pid, "tc", "qdisc", "del", "dev", dev, "root")  # whatever was there (none: an error, ignored)
        for cmd in self.link.tc_commands(dev):
            proc = _ns(pid, *cmd)
            if proc.returncode != 0:
                if "netem" in cmd and "unknown" in proc.stderr:
                    raise WanError("this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM): --wan-delay-ms and "
                                   "--wan-loss cannot be applied here; --wan-rate alone works (tbf)")
                raise WanError(f"{' '.join(cmd)}: {proc.stderr.strip()}")
        if count_from_here:
            self.banked, self.base = 0, self.sent_bytes(container) or 0
        return dev

    def bank(self, container: str) -> None:
        """Keep the bytes sent so far: the interface (and its counters) is about to go (a kill)."""
        self.banked += (self.sent_bytes(container) or 0) - self.base
        self.base = 0

    def sent_total(self, container: str) -> int:
        """Uplink bytes since apply(count_from_here=True), across interface changes banked meanwhile."""
        return self.banked + (self.sent_bytes(container) or 0) - self.base

    def sent_bytes(self, container: str) -> int | None:
        """Bytes the shaped root qdisc sent since it was applied (None if it is gone)."""
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

    def remove(self, container: str) -> None:
        try:
            pid, dev = self._dev(container)
        except WanError:
            return  # the container or its interface is gone: nothing left to undo
        _ns(pid, "tc", "qdisc", "del", "dev", dev, "root")
