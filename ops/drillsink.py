"""The drill's two views of the appliance: the spool (inside the edge container) and the sink.

Verifiers are pluggable (VERIFIERS): `emulator` reads the bundled emulator's
GET /stats (over TLS, with the CA the init service made); `databricks` runs
`edge verify` in the edge container, which queries the real Delta table through
a SQL warehouse and reports the same accounting.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time

from ops import drillcheck as dc
from ops.composectl import ComposeError, Emulator, docker, wait_for


class DrillSetupError(RuntimeError):
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
        raise DrillSetupError(f"edge spool stats kept failing: {last}")

    def forwarder(self) -> dict:
        """The forwarder's last persisted state (streams, window bounds, its drain figures); {} if unreadable."""
        try:
            proc = docker("exec", self.find_container(), "edge", "spool", "export", "state", "--config", self.config,
                          timeout=60, check=False)
        except ComposeError:
            return {}  # advisory: the limit section then says what it could not measure
        for line in proc.stdout.splitlines() if proc.returncode == 0 else []:
            try:
                row = json.loads(line)
                if row.get("kind") == "forwarder":
                    return json.loads(row["json"])
            except (ValueError, KeyError, TypeError):
                continue
        return {}


class EmulatorVerifier:
    """The bundled ZeroBus emulator's landed-row accounting (GET /stats)."""

    name = "emulator"
    cheap = True  # one HTTP GET: it can be watched a few times a second

    def __init__(self, sink: Emulator, table: str):
        self.sink = sink
        self.table = table

    def _table(self) -> dict:
        # Retried for a while: the emulator restarts with the stack in --restart-stack / --upgrade.
        stats = wait_for(lambda: self.sink.stats(timeout=10), timeout=120, interval=1,
                         what=f"GET {self.sink.url}/stats")
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
    cheap = False  # a SQL query through a warehouse per look

    def __init__(self, command: list[str], config: str, warehouse_id: str | None, table: str):
        self.command, self.config, self.warehouse_id, self.table = command, config, warehouse_id, table

    def _report(self, appliance_id: str) -> dict:
        args = [*self.command, "verify", "--config", self.config, "--appliance-id", appliance_id]
        if self.warehouse_id:
            args += ["--warehouse-id", self.warehouse_id]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
        if proc.returncode not in (0, 1):  # 1 = unexplained gaps, still a report
            raise DrillSetupError(f"edge verify failed: {(proc.stderr or proc.stdout).strip()[-500:]}")
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


class SinkWatch:
    """Watches a cheap verifier from a thread during the drain, a few times a second, until the sink
    holds ``last``: each look is (time, the sink's max_seq, the uplink's byte counter). The spool's
    own view costs a ``docker exec`` of the edge CLI (about a second of CPU, several on a loaded
    host): a drain of a few seconds would fall between two of its samples, so it is timed here.

    The sink lands a batch only when it acks it (the realistic profile's log-normal latency, median
    175 ms, p95 500 ms, in order), so what it holds grows in bursts that lag the link: with an
    uplink counter (the WAN relay's, cheap to read) the drain is timed by the bytes crossing it,
    between 5% and 95% of what the drain sent, and turned into readings/s at the drain's bytes per
    reading (all it sent from the restore to the end, over the readings the sink got). Without one,
    by the sink's own count between 5% and 95% of the backlog (late by about the same latency at
    both ends)."""

    LOW, HIGH = 0.05, 0.95

    def __init__(self, verifier, appliance: str, start: int | None, last: int, uplink_bytes=None,
                 interval: float = 0.2):
        self.verifier, self.appliance, self.last = verifier, appliance, last
        self.start = -1 if start is None else start
        self.uplink_bytes = uplink_bytes or (lambda: 0)
        self.interval = interval
        self.looks: list[tuple[float, int, int]] = []  # (monotonic t, sink max_seq, uplink bytes)
        self.done: tuple[float, int, int] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sink-watch", daemon=True)

    def __enter__(self) -> "SinkWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set() and self.done is None:
            try:
                top = self.verifier.progress(self.appliance)
            except Exception as exc:  # the emulator restarting: look again, and say why if it lasts
                print(f"sink watch: {type(exc).__name__}: {exc}", flush=True)
                top = None
            if top is not None:
                look = (time.monotonic(), top, self.uplink_bytes())
                self.looks.append(look)
                if top >= self.last:
                    self.done = look
                    return
            self._stop.wait(self.interval)

    def _crossing(self, level: float, col: int) -> float | None:
        """When column ``col`` of the looks (1: sink max_seq, 2: uplink bytes) crossed ``level``,
        interpolated between the two looks around it."""
        prev = None
        for look in self.looks:
            if look[col] >= level:
                if prev is None or look[col] == prev[col]:
                    return look[0]
                return prev[0] + (look[0] - prev[0]) * (level - prev[col]) / (look[col] - prev[col])
            prev = look
        return None

    def figures(self, t_restore: float) -> dict | None:
        """Seconds from the restore to the first delivery and to the whole backlog, the drain's rate
        (None when the backlog was in within one look), and the uplink's bytes for it."""
        if self.done is None or not self.looks:
            return None
        moving = next(look for look in self.looks if look[1] > self.start)
        t2, s2, b2 = self.done
        b0 = self.looks[0][2]
        readings, sent = s2 - self.start, b2 - b0
        out = {"first_delivery_s": round(moving[0] - t_restore, 2), "backlog_in_sink_s": round(t2 - t_restore, 2),
               "readings": readings, "uplink_bytes": sent, "rate": None, "seconds": None, "timed_by": None}
        if moving is self.done:
            return out  # in within one look: too short to time
        if sent > 0:
            lo, hi = self._crossing(b0 + self.LOW * sent, 2), self._crossing(b0 + self.HIGH * sent, 2)
            share, timed_by = (self.HIGH - self.LOW) * readings, "uplink bytes"
        else:
            backlog = self.last - self.start
            lo = self._crossing(self.start + self.LOW * backlog, 1)
            hi = self._crossing(self.start + self.HIGH * backlog, 1)
            share, timed_by = (self.HIGH - self.LOW) * backlog, "sink rows"
        if lo is not None and hi is not None and hi > lo:
            out["rate"] = round(share / (hi - lo), 1)
            out["seconds"] = readings / out["rate"]  # the whole drain at that rate (unrounded: it divides)
            out["timed_by"] = timed_by
        return out
