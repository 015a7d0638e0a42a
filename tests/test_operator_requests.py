"""Operator requests from the admin page reach the running appliance and are answered."""

from __future__ import annotations

import time

from edge.control import commands
from edge.spool import SpoolReader
from simulators.kit.edgeproc import EdgeRun
from simulators.kit.emulator import Emulator


def wait_done(directory, cmd_id: str, timeout: float = 20) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for rec in commands.recent(directory, 50):
            if rec["id"] == cmd_id and rec["status"] != "pending":
                return rec
        time.sleep(0.2)
    raise AssertionError(f"request {cmd_id} still pending after {timeout}s")


def test_checkpoint_and_dead_letter_retry(tmp_path):
    with Emulator() as emu:
        emu.set_faults({"reject_records": {"point": "synthetic/3"}})
        cfg = {"appliance_id": "plant-ops", "sources": [{"name": "demo", "type": "synthetic", "rate": 200, "points": 5}]}
        with EdgeRun(tmp_path, cfg, emulator=emu) as edge:
            assert edge.wait_for(lambda: edge.stats()["dead_lettered"] >= 1, 60), edge.log_tail()
            emu.clear_faults()
            with SpoolReader(edge.spool_path) as r:
                dl = r.dead_letters(1)[0]
            directory = tmp_path / "data" / "admin-commands"

            rec = wait_done(directory, commands.submit(directory, "retry_dead_letter", {"id": dl["id"]}, by="admin")["id"])
            assert rec["status"] == "done" and "re-appended as seq" in rec["detail"]
            new_seq = int(rec["detail"].rsplit(" ", 1)[1])
            assert edge.wait_for(lambda: any(r["seq"] == new_seq for r in emu.rows(appliance_id="plant-ops",
                                                                                      from_seq=new_seq, limit=1)), 30)

            rec = wait_done(directory, commands.submit(directory, "checkpoint_wal", {}, by="operator")["id"])
            assert rec["status"] == "done" and "wal_checkpoint(TRUNCATE)" in rec["detail"]

            again = wait_done(directory, commands.submit(directory, "retry_dead_letter", {"id": dl["id"]}, by="admin")["id"])
            assert again["status"] == "refused" and "already retried" in again["detail"]
        app = emu.table_stats()["appliances"]["plant-ops"]
        assert app["unexplained_missing"] == []  # the dead letter's slot is a marker
