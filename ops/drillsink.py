"""The drill's two views of the appliance: the spool (inside the edge container) and the sink.

Verifiers are pluggable (VERIFIERS): `emulator` reads the bundled emulator's
GET /stats (over TLS, with the CA the init service made); `databricks` runs
`edge verify` in the edge container, which queries the real Delta table through
a SQL warehouse and reports the same accounting.
"""

from __future__ import annotations

import json
import subprocess
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
