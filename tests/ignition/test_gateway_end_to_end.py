"""A gateway that behaves like the Ignition scripts, through `edge run`, into the emulator: every event lands."""

from __future__ import annotations

import sqlite3
import threading
import time

from edge.encode import decode
from simulators.ignition.__main__ import Gateway
from simulators.kit.emulator import Emulator

from .conftest import TOKEN


def landed_counter_values(emu: Emulator) -> list[int]:
    with sqlite3.connect(f"file:{emu.store_path}?mode=ro", uri=True) as db:
        return [decode(r).value_int for (r,) in db.execute("SELECT record FROM rows WHERE kind = 'reading'")]


def wait(pred, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.2)
    return False


def zerobus_cfg(emu: Emulator) -> dict:
    return {"endpoint": emu.grpc_endpoint, "workspace_url": emu.workspace_url, "client_id": emu.client_id,
            "client_secret": emu.client_secret, "reconnect_initial": "200ms", "reconnect_max": "1s"}


def test_every_event_the_gateway_sent_lands_by_key(edge_http):
    with Emulator() as emu:
        edge = edge_http(forward=True, zerobus=zerobus_cfg(emu))
        gw = Gateway(f"http://127.0.0.1:{edge.port}", TOKEN, batch_size=200)
        for _ in range(10):
            for _ in range(300):
                gw.counter_change()
            gw.flush()
        edge.kill()  # between requests: everything answered 200 is in the spool
        edge.start()
        for _ in range(5):
            for _ in range(300):
                gw.counter_change()
            gw.flush()
        assert gw.report()["queued"] == 0 and gw.acked == 4500
        assert wait(lambda: emu.table_stats().get("unique", 0) >= 4500, 60)
        values = landed_counter_values(emu)
        assert sorted(set(values)) == list(range(1, 4501))
        app = emu.table_stats()["appliances"]["plant-test"]
        assert app["unexplained_missing"] == []


def test_full_spool_answers_503_and_the_gateway_catches_up_after_the_drain(edge_http):
    with Emulator() as emu:
        emu.set_faults({"down": True})
        edge = edge_http(forward=True, zerobus=zerobus_cfg(emu), spool={"max_bytes": "1MiB", "when_full": "block"})
        gw = Gateway(f"http://127.0.0.1:{edge.port}", TOKEN, batch_size=500)
        pad = "x" * 300
        n = 0
        while "503" not in gw.failures and n < 20_000:
            for _ in range(500):
                n += 1
                gw.tag_change(f"Plant/{pad}/{n}", n, "long")
            gw.flush()
        assert "503" in gw.failures, gw.report()
        held = gw.report()["queued"]
        assert held > 0  # the gateway keeps what the appliance refused
        emu.clear_faults()
        assert wait(lambda: (gw.flush(), gw.report()["queued"] == 0)[1], 90), gw.report()
        assert wait(lambda: emu.table_stats().get("unique", 0) >= n, 60)
        assert sorted(set(landed_counter_values(emu))) == list(range(1, n + 1))
