#!/usr/bin/env python3
"""Air-gap drill: cut the edge's uplink while collection goes on, restore it,
follow the drain, and prove with the sink's own accounting that nothing was lost.

    python3 ops/drill.py --cut 120                       # the Compose project of this directory
    python3 ops/drill.py -p plant-a --cut 600 --json drill.json
    python3 ops/drill.py --cut 60 --kill-during-drain    # plus a kill -9 of the edge mid-drain
    python3 ops/drill.py --cut 60 --restart-stack        # plus a restart of everything (a host reboot)
    python3 ops/drill.py --cut 60 --upgrade zerobus-edge:0.2.0   # plus an upgrade, spool kept

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

Verifiers are pluggable (VERIFIERS below): `emulator` reads the bundled
emulator's GET /stats; `databricks` runs `edge verify` in the edge container,
which queries the real Delta table through a SQL warehouse (gaps, loss
markers, duplicates per appliance_id) and reports the same accounting.
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

from ops import drillcheck as dc  # noqa: E402
from ops.composectl import Compose, ComposeError, docker, http_json, wait_for  # noqa: E402

EXIT_PASS, EXIT_LOSS, EXIT_SETUP = 0, 1, 2


class DrillError(RuntimeError):
    """The drill cannot run (setup), as opposed to a drill that found loss."""


class SpoolProbe:
    """Spool stats from inside the edge container: the same function the admin page uses."""

    def __init__(self, find_container, config: str):
        self.find_container = find_container  # re-resolved: a restart or upgrade replaces the container
        self.config = config

    def stats(self, attempts: int = 60) -> dict:
        last = ""
        for _ in range(attempts):  # the container may be restarting (kill -9, restart, upgrade)
            try:
                proc = docker("exec", self.find_container(), "edge", "spool", "stats", "--config", self.config,
                              timeout=60, check=False)
            except ComposeError as exc:
                last = str(exc)[-300:]
            else:
                if proc.returncode == 0:
                    return json.loads(proc.stdout)
                last = (proc.stderr or proc.stdout).strip()[-300:]
            time.sleep(1)
        raise DrillError(f"edge spool stats kept failing: {last}")


class EmulatorVerifier:
    """The bundled ZeroBus emulator's landed-row accounting (GET /stats)."""

    name = "emulator"

    def __init__(self, url: str, table: str):
        self.url = url.rstrip("/")
        self.table = table

    def _table(self) -> dict:
        # Retried for a while: the emulator restarts with the stack in --restart-stack / --upgrade.
        stats = wait_for(lambda: http_json(f"{self.url}/stats", timeout=10), timeout=120, interval=1,
                         what=f"GET {self.url}/stats")
        return (stats.get("tables") or {}).get(self.table) or {}

    def view(self, appliance_id: str) -> dc.SinkView:
        t = self._table()
        # The emulator counts rows and duplicates per table, the ranges per appliance.
        return _sink_view((t.get("appliances") or {}).get(appliance_id) or {}, counts=t)

    def progress(self, appliance_id: str) -> int | None:
        return self.view(appliance_id).max_seq


class TableVerifier:
    """A real workspace: `edge verify` runs the seq accounting as SQL on the Delta table.

    It runs where the config, the credentials and the egress are: inside the edge
    container (``command`` = ``docker exec <edge> edge``), through a SQL warehouse.
    """

    name = "databricks"

    def __init__(self, command: list[str], config: str, warehouse_id: str | None, table: str):
        self.command, self.config, self.warehouse_id, self.table = command, config, warehouse_id, table

    def _report(self, appliance_id: str) -> dict:
        import subprocess

        args = [*self.command, "verify", "--config", self.config, "--appliance-id", appliance_id]
        if self.warehouse_id:
            args += ["--warehouse-id", self.warehouse_id]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
        if proc.returncode not in (0, 1):  # 1 = unexplained gaps, still a report
            raise DrillError(f"edge verify failed: {(proc.stderr or proc.stdout).strip()[-500:]}")
        doc = json.loads(proc.stdout)
        table = next(iter(doc["tables"].values()))
        return table["appliances"][appliance_id]

    def view(self, appliance_id: str) -> dc.SinkView:
        app = self._report(appliance_id)
        return _sink_view(app, counts=app)

    def progress(self, appliance_id: str) -> int | None:
        return self.view(appliance_id).max_seq


def _sink_view(app: dict, counts: dict) -> dc.SinkView:
    """A verifier's report (``/stats`` or ``edge verify``, same field names) as the drill's view."""
    return dc.SinkView(
        min_seq=app.get("min_seq"),
        max_seq=app.get("max_seq"),
        missing=[tuple(r) for r in app.get("missing") or []],
        unexplained=[tuple(r) for r in app.get("unexplained_missing") or []],
        duplicates=int(counts.get("duplicates") or 0),
        rows=int(counts.get("rows") or 0),
    )


VERIFIERS = {"emulator": EmulatorVerifier, "databricks": TableVerifier}


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


def run(args: argparse.Namespace) -> int:
    compose = Compose(args.project, args.file, env_file=args.env_file, cwd=Path.cwd())
    try:
        container = compose.container(args.edge_service)
    except ComposeError as exc:
        raise DrillError(str(exc)) from None
    probe = SpoolProbe(lambda: compose.container(args.edge_service), args.config)
    if args.verify not in VERIFIERS:
        raise DrillError(f"unknown verifier {args.verify!r} (have: {', '.join(VERIFIERS)})")
    if args.verify == "databricks":
        verifier = TableVerifier(["docker", "exec", container, "edge"], args.config, args.warehouse_id, args.table)
    else:
        url = args.emulator_url
        if not url:
            host, port = compose.port(args.emulator_service, 8090)
            url = f"http://{host}:{port}"
        verifier = EmulatorVerifier(url, args.table)
    link = EgressLink(compose.network(args.egress_network), container, args.edge_service)

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
    cut_s = time.monotonic() - t_cut  # sampling and a restart make it longer than asked
    note(f"egress RESTORED after {cut_s:.0f}s: backlog {at_restore['depth_seqs']} seqs")
    backlog_last = int(at_restore["next_seq"]) - 1
    sink_at_restore = verifier.progress(appliance)

    if args.kill_during_drain:
        # Kill as soon as the sink shows the drain has begun: mid-drain, not before it.
        deadline = time.monotonic() + args.drain_timeout
        while time.monotonic() < deadline and (verifier.progress(appliance) or -1) <= (sink_at_restore or -1):
            time.sleep(0.1)
        at_kill = verifier.progress(appliance)
        how = kill_and_revive(container)
        when = ("mid-drain" if at_kill is not None and at_kill < backlog_last
                else "after the sink had the whole backlog (the drain outran the poll)")
        note(f"edge KILLED (-9) {when}, sink max_seq {at_kill} of {backlog_last}: {how}")

    t_restore = time.monotonic()
    drained, last_seq, drain_s = False, backlog_last, None
    while time.monotonic() - t_restore < args.drain_timeout:
        st = sample("drain")
        if int(st["delivered_seq"]) >= backlog_last:
            drained, last_seq = True, int(st["delivered_seq"])
            drain_s = time.monotonic() - t_restore
            note(f"backlog of the cut delivered: delivered_seq {last_seq} >= {backlog_last}; live depth {st['depth_seqs']}")
            break
        time.sleep(args.drain_interval)

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
        "dropped_by_cause": probe.stats().get("dropped") if drained else start.get("dropped"),
        "end": end,
        "events": events,
        "samples": samples,
        "verdict": v.to_dict(),
    }
    print(dc.render(report))
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
    p.add_argument("--emulator-url", default=None, help="default: the emulator service's published port 8090")
    p.add_argument("--table", default="main.edge.readings")
    p.add_argument("--warehouse-id", default=None,
                   help="--verify databricks: SQL warehouse for `edge verify` (default: zerobus.warehouse_id)")
    p.add_argument("--edge-service", default="edge")
    p.add_argument("--emulator-service", default="zerobus")
    p.add_argument("--egress-network", default="egress", help="the Compose network to cut (default egress)")
    p.add_argument("--config", default="/etc/edge/config.yaml", help="the edge's config path inside its container")
    p.add_argument("--json", default=None, help="write the full report (samples, events, verdict) here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.file = args.file or ["docker-compose.yml"]
    try:
        return run(args)
    except (DrillError, ComposeError, TimeoutError) as exc:
        print(f"drill: cannot run: {exc}", file=sys.stderr)
        return EXIT_SETUP
    except KeyboardInterrupt:
        print("drill: interrupted (egress restored)", file=sys.stderr)
        return EXIT_SETUP


if __name__ == "__main__":
    sys.exit(main())
