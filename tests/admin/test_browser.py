"""A real appliance (``edge run``: synthetic sources, spool, forwarder) feeding the ZeroBus emulator,
the admin page under gunicorn, and headless Chromium looking at it through two egress cuts.

Screenshots land in artifacts/admin/ (gitignored) for a person to look at; the
assertions use ``--dump-dom`` text.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from edge.spool import SpoolReader
from tests.admin.browser import CookieProxy, chromium, login_cookie
from tests.admin.browser import text_of as _text
from tests.admin.conftest import ENV, PASSWORDS
from tests.admin.live import ROOT, get
from tests.admin.live import appliance as appliance_run
from tests.admin.live import appliance_config
from simulators.kit.emulator import Emulator

ARTIFACTS = ROOT / "artifacts" / "admin"


def _wait(pred, timeout: float, what: str, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _forwarder(spool: Path) -> dict:
    try:
        with SpoolReader(spool) as r:
            recs = r.states("forwarder")
        return recs[0]["value"] if recs else {}
    except Exception:  # noqa: BLE001 - not created yet
        return {}


def _depth(spool: Path) -> int:
    with SpoolReader(spool) as r:
        return r.stats()["depth_rows"]


@pytest.fixture
def appliance(tmp_path):
    emu = Emulator(data_dir=tmp_path / "emu")
    emu.start()
    cfg = appliance_config(tmp_path, emu, "plant-7-edge", [
        {"name": "line1-temps", "type": "synthetic", "rate": 1500, "points": 40, "prefix": "Line1/Temp"},
        {"name": "press-hall", "type": "synthetic", "rate": 500, "points": 12, "prefix": "Press/Force", "unit": "kN"},
    ], batch_max_records=2000)
    spool = tmp_path / "spool.db"
    try:
        with appliance_run(tmp_path, cfg, {**ENV, "ZB_SECRET": emu.client_secret},
                           ready=lambda: _forwarder(spool).get("last_ack_ts")) as (gun, proc):
            yield {"emu": emu, "spool": spool, "gun": gun, "proc": proc, "tmp": tmp_path}
    finally:
        emu.stop()


def test_operator_sees_backlog_states_and_drills_in_a_real_browser(appliance):
    emu, spool, gun = appliance["emu"], appliance["spool"], appliance["gun"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    # Drill 1: cut egress for a few seconds, bring it back, wait until the backlog drained.
    emu.kill()
    _wait(lambda: _depth(spool) > 3000, 30, "a backlog during the cut")
    time.sleep(2)
    emu.start()
    _wait(lambda: any(c.get("drained_ts") for c in _forwarder(spool).get("egress_cuts", [])), 60,
          "the first cut to drain")
    # Drill 2: cut again and look at the page while egress is down.
    emu.kill()
    _wait(lambda: _forwarder(spool).get("state") in ("backing_off", "connecting")
          and any(c.get("open") for c in _forwarder(spool).get("egress_cuts", [])), 30, "the forwarder to notice")
    _wait(lambda: _depth(spool) > 2000, 30, "a new backlog")

    cookie = login_cookie("127.0.0.1", gun.port, "operator", PASSWORDS["operator"])
    for _ in range(6):  # an operator who has had the page open: each worker has seen earlier source counters
        assert get(gun.port, "/", headers={"Cookie": cookie})[0] == 200
        time.sleep(0.5)
    proxy = CookieProxy(("127.0.0.1", gun.port), cookie)
    try:
        url = f"http://127.0.0.1:{proxy.port}/"
        profile = appliance["tmp"] / "chromium"
        depth_before = _depth(spool)
        dom = chromium(url, profile=profile)
        depth_after = _depth(spool)
        chromium(url, screenshot=ARTIFACTS / "overview.png", size="1366,1700", profile=profile)
        chromium(url, screenshot=ARTIFACTS / "overview-phone.png", size="390,2600", profile=profile)
        status, body = get(gun.port, "/api/status", headers={"Cookie": cookie})
        metrics_status, metrics = get(gun.port, "/metrics")
    finally:
        proxy.close()
    (ARTIFACTS / "overview.html").write_text(dom)

    assert status == 200 and metrics_status == 200
    api = json.loads(body)
    # What an operator must see at a glance during the outage.
    assert _text(dom, "headline") == "Uplink egress down"
    assert _text(dom, "uplink-state") == "egress down"
    depth_shown = int(_text(dom, "depth-rows").replace(",", ""))
    assert depth_before <= depth_shown <= depth_after, (depth_before, depth_shown, depth_after)
    assert _text(dom, "endpoint") == emu.grpc_endpoint and _text(dom, "table") == emu.table
    assert re.fullmatch(r"[0-9.]+s|[0-9]+m [0-9]{2}s", _text(dom, "oldest-age")), _text(dom, "oldest-age")
    assert "stalled" == _text(dom, "drain-eta")  # nothing drains while egress is down
    for name in ("line1-temps", "press-hall"):
        row = re.search(rf'id="source-{name}".*?</tr>', dom, re.S).group(0)
        assert "running" in row
    cuts = re.findall(r'<tr class="cut">(.*?)</tr>', dom, re.S)
    assert len(cuts) == 2 and "ongoing" in cuts[0]
    assert re.search(r"[0-9.]+s|[0-9]+m", re.sub(r"<[^>]+>", " ", cuts[1]))
    drained = [d for d in api["drills"] if d["drain_s"] is not None]
    assert len(drained) == 1 and drained[0]["peak_depth"] > 3000
    assert api["uplink"]["last_ack_seq"] and api["losses"]["dropped_total"] == 0
    assert b"zerobus_edge_forwarder_state{state=\"egress_down\"} 1" in metrics
    assert emu.client_secret not in dom and emu.client_secret not in body.decode()
    png = (ARTIFACTS / "overview.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    print(f"\nscreenshots: {ARTIFACTS}/overview.png, overview-phone.png; depth shown {depth_shown:,}; "
          f"drill 1 peak {drained[0]['peak_depth']:,} drained in {drained[0]['drain_s']:.1f}s")
