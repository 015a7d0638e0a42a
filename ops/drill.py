#!/usr/bin/env python3
"""Air-gap drill: cut the edge's uplink while collection goes on, restore it,
follow the drain, and prove with the sink's own accounting that nothing was lost.

    python3 ops/drill.py --cut 120                       # the Compose project of this directory
    python3 ops/drill.py -p plant-a --cut 600 --json drill.json
    python3 ops/drill.py --cut 60 --kill-during-drain    # plus a kill -9 of the edge mid-drain
    python3 ops/drill.py --cut 60 --restart-stack        # plus a restart of everything (a host reboot)
    python3 ops/drill.py --cut 60 --upgrade zerobus-edge:0.2.0   # plus an upgrade, spool kept
    sudo python3 ops/drill.py --cut 600 --wan-rate 20mbit --wan-delay-ms 50 --wan-loss 0.1%
                                                         # over a plant's uplink (tc, ops/wan.py)

Steps: (1) record the start state (spool stats from `edge spool stats` inside the
edge container, the sink's view); (2) `docker network disconnect` the edge from
the egress network for --cut seconds while the sources keep collecting, printing
depth, oldest age and runway as they grow; (3) reconnect; (4) follow the drain
with its rate and ETA until the backlog of the cut is delivered; (5) verify at
the sink that every seq of the drill window arrived or is covered by a loss
marker (explained loss, counted by cause), counting duplicates.

Exit status: 0 passed, 1 loss / unexplained gap / drain not finished, 2 the
drill could not run (no project, no edge container, no sink). The egress link is
restored on every exit path, Ctrl-C included.

Verifiers are pluggable (ops/drillsink.py): `emulator` reads the bundled
emulator's GET /stats; `databricks` runs `edge verify` in the edge container,
which queries the real Delta table through a SQL warehouse (gaps, loss
markers, duplicates per appliance_id) and reports the same accounting.

--wan-* shapes the edge's uplink for the whole drill (ops/wan.py: tc in the
edge's network namespace, from the host, as root; without netem in the kernel
the delay goes through a delaying TCP relay, the loss is reported as not
emulated). Every drill reports its binding limit as ops/bench_drain.py computes
it (ops/drainlimit.py: min of the link, streams x quota, the window over the
ack RTT, --no-limit-rate), which binds, and the drain as a fraction of it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a plain script

from ops import drainlimit  # noqa: E402
from ops import drillcheck as dc  # noqa: E402
from ops import wan  # noqa: E402
from ops.drillsink import VERIFIERS, DrillSetupError, EmulatorVerifier, SinkWatch, SpoolProbe, TableVerifier  # noqa: E402
from ops.composectl import Compose, ComposeError, Emulator, docker  # noqa: E402

EXIT_PASS, EXIT_LOSS, EXIT_SETUP = 0, 1, 2


DrillError = DrillSetupError  # the drill cannot run (setup), as opposed to a drill that found loss


class EgressLink:
    def __init__(self, network: str, container: str, alias: str):
        self.network, self.container, self.alias = network, container, alias
        self.cut_active = False

    def cut(self) -> None:
        docker("network", "disconnect", "-f", self.network, self.container, timeout=60)
        self.cut_active = True

    def restore(self) -> None:
        if not self.cut_active:
            return
        proc = docker("network", "connect", "--alias", self.alias, self.network, self.container, timeout=60, check=False)
        if proc.returncode != 0 and "already exists" not in proc.stderr:
            raise DrillError(f"could not reconnect {self.container} to {self.network}: {proc.stderr.strip()}")
        self.cut_active = False


def default_project() -> str:
    name = os.environ.get("COMPOSE_PROJECT_NAME") or Path.cwd().name
    return re.sub(r"[^a-z0-9_-]", "", name.lower())


def _keep(st: dict) -> dict:
    keys = ("depth_seqs", "depth_rows", "oldest_age_s", "ingest_rate_10s", "drain_rate_10s", "runway_s",
            "drain_eta_s", "next_seq", "delivered_seq", "dropped_total", "loss_markers_written")
    return {k: st.get(k) for k in keys}


def _crash(container: str) -> str:
    """SIGKILL the edge process itself, as a crash would (the OOM killer, a segfault).

    `docker kill` counts as an operator's stop, after which Docker's restart policy
    does not restart the container; a process that dies on its own is restarted.
    So kill the container's main process (the child of docker-init) from the host,
    and fall back to `docker kill` where that is not possible (not root, Docker Desktop).
    """
    pid = docker("inspect", "-f", "{{.State.Pid}}", container, timeout=30).stdout.strip()
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        os.kill(int(children[0] if children else pid), signal.SIGKILL)
        return "its process got SIGKILL"
    except (OSError, ValueError, IndexError):
        docker("kill", "-s", "KILL", container, timeout=30)
        return "docker kill -s KILL"


def kill_and_revive(container: str, wait_s: float = 20) -> str:
    """kill -9 the edge; its restart policy should bring it back, else start it as an operator would."""

    def state() -> list[str]:
        fmt = "{{.State.Running}} {{.State.StartedAt}} {{.RestartCount}}"
        return docker("inspect", "-f", fmt, container, timeout=30).stdout.split()

    started_before = state()[1]
    how = _crash(container)
    t0 = time.monotonic()
    while time.monotonic() - t0 < wait_s:
        time.sleep(0.5)
        running, started, restarts = state()
        if running == "true" and started != started_before:
            return f"{how}; restarted by its restart policy (restart count {restarts})"
    docker("start", container, timeout=60)
    return f"{how}; started by the drill (the restart policy did not)"


SHAPERS: list = []  # every shaper made, undone on every exit path (main's finally)


def wan_shaper(args: argparse.Namespace, network: str, sink_container=None) -> wan.Shaper | None:
    """``sink_container``: () -> the emulator's container, for the delay without netem (a relay in front of it)."""
    try:
        link = wan.Link(args.wan_delay_ms, args.wan_rate, wan.loss_pct(args.wan_loss))
        if link.rate:
            wan.rate_bps(link.rate)
    except ValueError as exc:
        raise DrillError(str(exc)) from None
    if not link.shaped:
        return None

    def inspect(container: str) -> tuple[str, str]:
        fmt = "{{.State.Pid}} {{with index .NetworkSettings.Networks \"%s\"}}{{.IPAddress}}{{end}}" % network
        pid, _, ip = docker("inspect", "-f", fmt, container, timeout=30).stdout.strip().partition(" ")
        return pid, ip

    def relay_target() -> tuple[str, int, str]:
        try:
            _, sink_ip = inspect(sink_container())
        except ComposeError as exc:
            raise wan.WanError(f"no netem in this kernel, and the delaying relay needs the emulator's container "
                               f"in this project: {exc}") from None
        gateway = docker("network", "inspect", "-f", "{{range .IPAM.Config}}{{.Gateway}} {{end}}", network,
                         timeout=30).stdout.split()
        if not sink_ip or not gateway:
            raise wan.WanError(f"no sink address or gateway on {network} for the delaying relay")
        return sink_ip, args.wan_sink_port, gateway[0]

    try:
        shaper = wan.Shaper(link, inspect, relay_target if sink_container else None)
    except wan.WanError as exc:
        raise DrillError(str(exc)) from None
    SHAPERS.append(shaper)
    return shaper


def drain_limit(args, probe: SpoolProbe, sink_profile, wan_fig: dict | None, shaper, said: dict, rtts: list,
                drain_rate: float | None) -> dict:
    """The binding limit as the benchmark computes it (ops/drainlimit.py), from what this drill measured:
    the link at its wire bytes per reading, streams x the quota (--quota-per-stream, else the emulator's),
    the forwarder's most in flight over its lowest ack RTT, and --no-limit-rate if given."""
    fwd = probe.forwarder()
    quota = args.quota_per_stream
    if quota is None and sink_profile is not None:
        try:
            quota = sink_profile().get("quota_records_per_s") or None
        except Exception as exc:  # noqa: BLE001 - advisory: the quota is then reported as not measured
            print(f"drill: could not read the emulator's quota: {exc}", file=sys.stderr)
    wire = (wan_fig or {}).get("wire_bytes_per_reading")
    rtt_ms = min(rtts) if rtts else None
    if wan_fig and drain_rate is None:
        drain_rate = wan_fig.get("delivered_rate")
    known = drainlimit.limits(
        streams=int(fwd.get("streams") or 1), quota_per_stream=quota,
        link_bps=wan.rate_bps(shaper.link.rate) if shaper and shaper.link.rate else None,
        wire_bytes_per_reading=wire, window_records=fwd.get("max_inflight_records"),
        window_bytes=fwd.get("max_inflight_bytes"), bytes_per_reading=wire,
        rtt_s=rtt_ms / 1000 if rtt_ms else None, no_limit=args.no_limit_rate)
    fig = drainlimit.figures(known, drain_rate, said, rtt_ms)
    if wan_fig is not None and "binding_limit_rate" in fig:
        # The link's capacity stays in the report; the limit the drain is judged by is the lowest known.
        wan_fig["link_capacity_rate"] = wan_fig.get("binding_limit_rate")
        wan_fig["binding_limit"], wan_fig["binding_limit_rate"] = fig["binding_limit"], fig["binding_limit_rate"]
        if wan_fig.get("delivered_rate"):
            wan_fig["fraction_of_limit"] = round(wan_fig["delivered_rate"] / fig["binding_limit_rate"], 3)
    return fig


def run(args: argparse.Namespace) -> int:
    compose = Compose(args.project, args.file, env_file=args.env_file, cwd=Path.cwd())
    try:
        container = compose.container(args.edge_service)
    except ComposeError as exc:
        raise DrillError(str(exc)) from None
    probe = SpoolProbe(lambda: compose.container(args.edge_service), args.config)
    if args.verify not in VERIFIERS:
        raise DrillError(f"unknown verifier {args.verify!r} (have: {', '.join(VERIFIERS)})")
    url = None
    sink_profile = None  # the emulator's service figures (its quota); unknown for a real workspace
    if args.verify == "databricks":
        verifier = TableVerifier(["docker", "exec", container, "edge"], args.config, args.warehouse_id, args.table)
    else:
        if not args.emulator_url:
            sink = Emulator.of(compose, args.emulator_service)
        elif args.emulator_ca:
            sink = Emulator(args.emulator_url, Path(args.emulator_ca).read_text())
        elif args.emulator_url.startswith("https:"):
            sink = Emulator(args.emulator_url, Emulator.of(compose, args.emulator_service).cadata)
        else:
            sink = Emulator(args.emulator_url)
        url = sink.url
        verifier = EmulatorVerifier(sink, args.table)
        sink_profile = lambda: (sink.stats(timeout=10).get("service") or {}).get("profile") or {}  # noqa: E731
    link = EgressLink(compose.network(args.egress_network), container, args.edge_service)
    shaper = wan_shaper(args, link.network, (lambda: compose.container(args.emulator_service))
                        if args.verify == "emulator" else None)

    t0 = time.monotonic()
    events: list[dict] = []
    samples: list[dict] = []

    def note(what: str) -> None:
        events.append({"t": round(time.monotonic() - t0, 1), "what": what})
        print(f"t+{time.monotonic() - t0:6.1f}s {what}", flush=True)

    def sample(phase: str) -> dict:
        st = probe.stats()
        t = time.monotonic() - t0
        samples.append({"t": round(t, 2), "phase": phase, **_keep(st)})
        print(dc.sample_line(t, phase, st), flush=True)
        return st

    if shaper:
        dev = shaper.apply(container)
        note(f"WAN link on {dev} of {container[:12]}: {shaper.describe()}")
    start = sample("start")
    appliance = start["appliance_id"]
    sink0 = verifier.view(appliance)
    first_seq = int(start["delivered_seq"]) + 1
    note(f"appliance {appliance}: spool next_seq {start['next_seq']}, delivered {start['delivered_seq']}; "
         f"sink max_seq {sink0.max_seq}, duplicates so far {sink0.duplicates}")

    link.cut()
    t_cut = time.monotonic()
    note(f"egress CUT: {container[:12]} disconnected from {link.network} for {args.cut:.0f}s")
    try:
        cut_end = time.monotonic() + args.cut
        while (left := cut_end - time.monotonic()) > 0:
            time.sleep(min(args.interval, left))
            sample("cut")
        at_restore = sample("cut")
        if args.restart_stack or args.upgrade:
            # The spool volume must carry the backlog across: new containers attach
            # every network again, which also ends the cut.
            compose.stop(timeout=180)
            note("whole stack STOPPED (docker compose stop; volumes kept)")
            if args.upgrade:
                compose.env["EDGE_IMAGE"] = args.upgrade
            compose.run("up", "-d", "--no-build", "--force-recreate", timeout=300)
            link.cut_active = False
            note(f"whole stack UP again{' on image ' + args.upgrade if args.upgrade else ''} "
                 f"(containers recreated, spool volume kept)")
            container = compose.container(args.edge_service)
    finally:
        link.restore()
        if shaper:  # the reconnected interface is a new one: shape it before the drain fills it
            container = compose.container(args.edge_service)
            shaper.apply(container, count_from_here=True)
    cut_s = time.monotonic() - t_cut  # sampling and a restart make it longer than asked
    note(f"egress RESTORED after {cut_s:.0f}s: backlog {at_restore['depth_seqs']} seqs")
    backlog_last = int(at_restore["next_seq"]) - 1
    t_link_up = time.monotonic()
    sink_at_restore = verifier.progress(appliance)
    watch = None
    if verifier.cheap:  # the drain timed from the sink itself, a few times a second
        watch = SinkWatch(verifier, appliance, sink_at_restore, backlog_last,
                          (lambda: shaper.sent_total(container)) if shaper else None).__enter__()

    if args.kill_during_drain:
        # Kill as soon as the sink shows the drain has begun: mid-drain, not before it.
        deadline = time.monotonic() + args.drain_timeout
        while time.monotonic() < deadline and (verifier.progress(appliance) or -1) <= (sink_at_restore or -1):
            time.sleep(0.1)
        at_kill = verifier.progress(appliance)
        if shaper:
            shaper.bank(container)
        how = kill_and_revive(container)
        if shaper:
            shaper.apply(container)
        when = ("mid-drain" if at_kill is not None and at_kill < backlog_last
                else "after the sink had the whole backlog (the drain outran the poll)")
        note(f"edge KILLED (-9) {when}, sink max_seq {at_kill} of {backlog_last}: {how}")

    t_restore = time.monotonic()
    drained, last_seq, drain_s = False, backlog_last, None
    moving = None  # (t, delivered_seq, uplink bytes) at the first sample after the drain began
    said: dict[str, int] = {}  # the forwarder's own view of what binds it, sampled
    rtts: list[float] = []
    next_look = 0.0
    while time.monotonic() - t_restore < args.drain_timeout:
        st = sample("drain")
        if time.monotonic() >= next_look:  # a docker exec each: every few seconds, not every sample
            fwd = probe.forwarder().get("drain") or {}
            if fwd.get("binding"):
                said[fwd["binding"]] = said.get(fwd["binding"], 0) + 1
            if fwd.get("min_rtt_ms"):
                rtts.append(float(fwd["min_rtt_ms"]))
            next_look = time.monotonic() + args.fwd_interval
        if moving is None and int(st["delivered_seq"]) > int(at_restore["delivered_seq"]):
            moving = (time.monotonic(), int(st["delivered_seq"]), shaper.sent_total(container) if shaper else 0)
        if int(st["delivered_seq"]) >= backlog_last:
            drained, last_seq = True, int(st["delivered_seq"])
            drain_s = time.monotonic() - t_restore
            note(f"backlog of the cut delivered: delivered_seq {last_seq} >= {backlog_last}; live depth {st['depth_seqs']}")
            break
        time.sleep(args.drain_interval)

    t_end = time.monotonic()
    sink_fig = None
    if watch is not None:
        watch.__exit__(None, None, None)
        sink_fig = watch.figures(t_link_up)
        if sink_fig and sink_fig.get("rate"):
            note(f"sink: first delivery {sink_fig['first_delivery_s']:.1f}s after the restore, the whole backlog "
                 f"in at {sink_fig['backlog_in_sink_s']:.1f}s; {sink_fig['rate']:.0f} readings/s between 5% and "
                 f"95% of it (timed by the {sink_fig['timed_by']})")
        elif sink_fig:
            note(f"sink: the whole backlog arrived within one look ({watch.interval:g}s), "
                 f"{sink_fig['first_delivery_s']:.1f}s after the restore: too short a drain to time (cut longer)")
    sink_rate = sink_fig["rate"] if sink_fig and sink_fig.get("rate") else None
    wan_fig = None
    if shaper:
        # The link's share is measured while the drain runs: from the first sign of it moving (the
        # reconnect backoff before it is the SDK's, not the link's) to its end; timed in the sink
        # when it can be watched, else between the spool's samples.
        sent = shaper.sent_total(container)
        if sink_rate:
            wan_fig = wan.link_figures(shaper.link, sink_fig["uplink_bytes"], sink_fig["readings"],
                                       sink_fig["seconds"], shaper.delay_by)
        elif sink_fig:  # in within one look: the bytes per reading are known, the rate is not
            wan_fig = wan.link_figures(shaper.link, sink_fig["uplink_bytes"], sink_fig["readings"], None,
                                       shaper.delay_by)
        elif drained and moving and last_seq > moving[1]:
            wan_fig = wan.link_figures(shaper.link, sent - moving[2], last_seq - moving[1], t_end - moving[0],
                                       shaper.delay_by)
        else:
            wan_fig = wan.link_figures(shaper.link, sent, last_seq - int(at_restore["delivered_seq"]) if drained else 0,
                                       drain_s, shaper.delay_by)
        ingest = [x["ingest_rate_10s"] for x in samples if x["phase"] == "cut" and x.get("ingest_rate_10s")]
        if ingest and wan_fig.get("delivered_rate"):
            wan_fig["ingest_rate"] = round(sum(ingest) / len(ingest), 1)
            wan_fig["drain_over_ingest"] = round(wan_fig["delivered_rate"] / wan_fig["ingest_rate"], 1)
        shaper.remove(container)
        note("WAN shaping removed")
    limit_fig = drain_limit(args, probe, sink_profile, wan_fig, shaper, said, rtts,
                            sink_rate or ((last_seq - moving[1]) / (t_end - moving[0])
                                          if drained and moving and last_seq > moving[1] and t_end > moving[0] else None))
    sink1 = verifier.view(appliance)
    v = dc.verdict(first_seq, last_seq, sink1, sink0.duplicates, drained)
    end = samples[-1]
    report = {
        "appliance_id": appliance,
        "verifier": verifier.name,
        "sink": url,
        "egress_network": link.network,
        "cut_s": round(cut_s, 1),
        "cut_requested_s": args.cut,
        "peak_depth": at_restore["depth_seqs"],
        "peak_oldest_age_s": at_restore.get("oldest_age_s"),
        "runway_at_restore_s": at_restore.get("runway_s"),
        "drain_s": drain_s,
        "drain_rate": (int(at_restore["depth_seqs"]) / drain_s) if drain_s else None,
        "sink_drain": sink_fig,
        "dropped_by_cause": probe.stats().get("dropped") if drained else start.get("dropped"),
        "end": end,
        "events": events,
        "samples": samples,
        "verdict": v.to_dict(),
        "wan": wan_fig,
        "limit": limit_fig,
    }
    print(dc.render(report))
    if wan_fig:
        print("\n".join(wan.render(wan_fig)))
    print("\n".join(drainlimit.render(limit_fig, binding_lines=not wan_fig)))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
        print(f"  report              {args.json}")
    return EXIT_PASS if v.ok else EXIT_LOSS


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ops/drill.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-p", "--project", default=default_project(), help="Compose project (default: this directory's)")
    p.add_argument("-f", "--file", action="append", help="Compose file (repeatable; default docker-compose.yml)")
    p.add_argument("--env-file", default=None, help="Compose env file (default: Compose's own, .env)")
    p.add_argument("--cut", type=float, default=120.0, help="seconds the egress stays cut (default 120)")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between samples during the cut")
    p.add_argument("--drain-interval", type=float, default=1.0, help="seconds between samples during the drain")
    p.add_argument("--drain-timeout", type=float, default=900.0, help="give up on the drain after this long")
    p.add_argument("--kill-during-drain", action="store_true", help="kill -9 the edge container once the drain began")
    p.add_argument("--restart-stack", action="store_true",
                   help="at the end of the cut, stop the whole stack and recreate it (volumes kept)")
    p.add_argument("--upgrade", metavar="IMAGE", default=None,
                   help="like --restart-stack, recreating the Python services from IMAGE (EDGE_IMAGE)")
    p.add_argument("--verify", default="emulator", help=f"sink verifier: {', '.join(VERIFIERS)}")
    p.add_argument("--emulator-url", default=None, help="default: https on the emulator service's published port 8090")
    p.add_argument("--emulator-ca", default=None,
                   help="PEM CA of an https --emulator-url (default: the one in the emulator's container)")
    p.add_argument("--table", default="main.edge.readings")
    p.add_argument("--warehouse-id", default=None,
                   help="--verify databricks: SQL warehouse for `edge verify` (default: zerobus.warehouse_id)")
    p.add_argument("--edge-service", default="edge")
    p.add_argument("--emulator-service", default="zerobus")
    p.add_argument("--egress-network", default="egress", help="the Compose network to cut (default egress)")
    p.add_argument("--config", default="/etc/edge/config.yaml", help="the edge's config path inside its container")
    g = p.add_argument_group("WAN", "shape the edge's uplink with tc (netem + tbf) from the host; needs root. "
                             "A kernel without netem: the delay by a userspace TCP relay (ops/wan.py)")
    g.add_argument("--wan-delay-ms", type=float, default=0.0, help="added round-trip time (on the uplink)")
    g.add_argument("--wan-rate", default=None, help="link rate in tc's spelling, e.g. 20mbit")
    g.add_argument("--wan-loss", default="0", help="packet loss on the uplink, e.g. 0.1%% (netem only: without it "
                   "the report says the loss was not emulated)")
    g.add_argument("--wan-sink-port", type=int, default=443,
                   help="the emulator's gRPC port on the egress network (the delaying relay's target without netem)")
    lim = p.add_argument_group("limit", "what the drain is judged against (min of the limits measured)")
    lim.add_argument("--quota-per-stream", type=float, default=None,
                     help="records/s per stream (default: the emulator's profile; a real workspace: not known "
                          "unless given, e.g. 100000 as published)")
    lim.add_argument("--no-limit-rate", type=float, default=None,
                     help="readings/s this host drains with no latency, quota or link (ops/bench_drain.py's "
                          "no-latency row), if measured")
    lim.add_argument("--fwd-interval", type=float, default=5.0,
                     help="seconds between reads of the forwarder's drain figures during the drain")
    p.add_argument("--json", default=None, help="write the full report (samples, events, verdict) here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.file = args.file or ["docker-compose.yml"]
    try:
        return run(args)
    except (DrillError, ComposeError, TimeoutError, wan.WanError) as exc:
        print(f"drill: cannot run: {exc}", file=sys.stderr)
        return EXIT_SETUP
    except KeyboardInterrupt:
        print("drill: interrupted (egress restored)", file=sys.stderr)
        return EXIT_SETUP
    finally:
        for shaper in SHAPERS:  # a relay's DNAT left behind would cut the edge off once this process ends
            shaper.remove()


if __name__ == "__main__":
    sys.exit(main())
