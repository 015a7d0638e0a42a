"""Every collector runs under the one Supervisor: the runner restarts one that crashed (http and
synthetic have no connection of their own to supervise), with the crash in its state and counters,
and the others go on. Both report the same counters (``SourceStatus``)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from edge.config import parse
from edge.runner import Appliance
from edge.sources.status import SourceStatus
from edge.spool import SpoolReader
from simulators.kit.aio import wait_until

TOKEN = "0123456789abcdef0123"


@pytest.mark.timeout(90)
def test_a_collector_that_cannot_start_is_restarted_until_it_can(tmp_path):
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    port = held.getsockname()[1]
    cfg = parse({"appliance_id": "a", "data_dir": str(tmp_path), "spool": {"path": str(tmp_path / "spool.db")},
                 "sources": [{"name": "gw", "type": "http", "listen": f"127.0.0.1:{port}", "token": "${TOKEN}"},
                             {"name": "demo", "type": "synthetic", "rate": 50}]},
                env={"TOKEN": TOKEN})

    async def main() -> tuple[dict, dict, dict]:
        app = Appliance(cfg, forward=False)
        task = asyncio.create_task(app.run())
        reader = None

        def sources() -> dict:
            nonlocal reader
            if reader is None:
                if not (tmp_path / "spool.db").exists():
                    return {}
                reader = SpoolReader(tmp_path / "spool.db")
            return {r["name"]: r["value"] for r in reader.states("source")}

        try:
            # The port is taken: the http collector fails at every start; the synthetic one runs.
            await wait_until(lambda: sources().get("gw", {}).get("errors_total", 0) >= 2
                             and sources().get("demo", {}).get("state") == "running", timeout=30,
                             what="two failed starts of gw, demo running")
            failing = sources()
            held.close()  # the port is free: the next restart listens
            # (a source's record is written at most once a second: wait for demo's counted readings too)
            await wait_until(lambda: sources().get("gw", {}).get("state") == "listening"
                             and sources()["demo"].get("readings_total", 0) > 0, timeout=30,
                             what="gw listening after a restart, demo's readings counted")
            return failing["gw"], sources()["gw"], sources()["demo"]
        finally:
            app.request_stop()
            await asyncio.wait_for(task, 30)
            if reader is not None:
                reader.close()

    try:
        failing, listening, demo = asyncio.run(main())
    finally:
        held.close()
    assert failing["state"] in ("restarting", "error") and "already in use" in failing["last_error"].lower()
    assert listening["errors_total"] >= 2  # the crashes stay counted after the recovery
    assert demo["readings_total"] > 0 and demo["errors_total"] == 0  # the other source never noticed
    common = set(SourceStatus("x", "any", None).data)  # the counters and state every source reports
    assert common <= set(listening) and common <= set(demo)
