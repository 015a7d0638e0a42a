"""What the page says about the uplink is true, on a real appliance (``edge run``), the ZeroBus
emulator, gunicorn and headless Chromium.

Before: "Time to drain: stalled - not draining faster than ingest" while the spool was caught up;
an egress that stopped acking showed as down only when the SDK's ack timeout (30 s) failed the
stream, and the drill timeline dated the cut from then, not from the last ack.

Here the emulator stops acking (its ``never_ack`` fault: the link is up, nothing comes back, as when
a firewall drops the return path). The page must say so within a few seconds of the last ack
(``edge/forward/pace.py`` ``stall_after``: max(5 x p99 RTT, 3 s)), and date the cut from that ack.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from edge.forward.pace import STALL_MIN_S
from simulators.kit.emulator import Emulator
from simulators.kit.wait import wait_until
from tests.admin.browser import CookieProxy, chromium, login_cookie
from tests.admin.browser import text_of as _text
from tests.admin.conftest import ENV, PASSWORDS
from tests.admin.live import appliance as appliance_run
from tests.admin.live import appliance_config
from tests.admin.live import get

ACK_TIMEOUT_S = 30.0  # zerobus.ack_timeout (the default, written out): where the old detection came
# The forwarder looks at its head batch at least every 0.25 s, the page reads the state record the
# forwarder persists; a loaded 2-core machine adds some. Far below the ack timeout either way.
DETECT_BOUND_S = STALL_MIN_S + 4.0
RATE = 400  # readings/s of the synthetic source


@pytest.fixture
def appliance(tmp_path):
    emu = Emulator(data_dir=tmp_path / "emu")
    emu.start()
    cfg = appliance_config(tmp_path, emu, "truth-1", [{"name": "line1", "type": "synthetic", "rate": RATE,
                                                        "points": 20, "prefix": "Line1/Temp"}],
                           refresh=0, ack_timeout="30s")
    try:
        with appliance_run(tmp_path, cfg, {**ENV, "ZB_SECRET": emu.client_secret}) as (gun, _):
            yield {"emu": emu, "gun": gun, "tmp": tmp_path}
    finally:
        emu.stop()


def test_caught_up_is_not_stalled_and_a_silent_egress_shows_within_seconds_dated_from_the_last_ack(appliance):
    emu, gun = appliance["emu"], appliance["gun"]
    cookie = login_cookie("127.0.0.1", gun.port, "viewer", PASSWORDS["viewer"])

    def status() -> dict:
        code, body = get(gun.port, "/api/status", headers={"Cookie": cookie})
        assert code == 200, body[:300]
        return json.loads(body)

    # Live: readings arrive and are delivered as they come; the spool holds what is in flight. Past the
    # start (the rates cover 10 s), every refresh over a few seconds says so, not once by luck.
    wait_until(lambda: (s := status())["uplink"]["state"] in ("streaming", "idle")
               and (s["backlog"]["delivered_seq"] or 0) > 12 * RATE, 60, "12 s of delivery")
    for _ in range(8):  # eight refreshes, each after more was delivered
        live = status()
        assert live["backlog"]["drain_state"] in ("caught_up", "drained"), live["backlog"]
        assert live["overall"]["headline"] == "Delivering"
        seen = live["backlog"]["delivered_seq"]
        wait_until(lambda: status()["backlog"]["delivered_seq"] > seen, 10, "more delivered")
    _, page = get(gun.port, "/", headers={"Cookie": cookie})
    assert _text(page.decode(), "drain-eta") in ("caught up", "drained")

    # The egress goes silent: connected, nothing acked.
    emu.set_faults({"never_ack": True})
    seen = wait_until(lambda: (s := status())["uplink"]["state"] in ("stalled", "egress_down") and s,
                      ACK_TIMEOUT_S, "the page to show the uplink down")
    shown_at = time.time()
    last_ack = seen["uplink"]["last_ack_ts"]
    assert seen["uplink"]["state"] == "stalled", seen["uplink"]  # found by the pace, not by the SDK's timeout
    assert shown_at - last_ack <= DETECT_BOUND_S, (shown_at - last_ack, seen["uplink"]["reason"])
    assert seen["overall"]["severity"] == "bad" and seen["overall"]["headline"] != "Delivering"
    assert seen["backlog"]["drain_value"] == "stalled"
    drill = seen["drills"][0]
    assert drill["ongoing"] and drill["down_ts"] == pytest.approx(last_ack, abs=0.5)
    assert drill["detected_ts"] >= drill["down_ts"]

    # What an operator sees in a browser.
    proxy = CookieProxy(("127.0.0.1", gun.port), cookie)
    try:
        dom = chromium(f"http://127.0.0.1:{proxy.port}/", profile=appliance["tmp"] / "chromium")
    finally:
        proxy.close()
    assert _text(dom, "uplink-state") == "stalled"
    assert _text(dom, "drain-eta") == "stalled"
    cuts = re.findall(r'<tr class="cut">(.*?)</tr>', dom, re.S)
    assert len(cuts) == 1 and "ongoing" in cuts[0]

    # Acks again: the cut closes, and its outage is counted from the last ack before it.
    emu.clear_faults()
    back = wait_until(lambda: (s := status())["drills"] and s["drills"][0]["up_ts"] and s, 60, "the cut to close")
    drill = back["drills"][0]
    assert drill["down_ts"] == pytest.approx(last_ack, abs=0.5)
    assert drill["outage_s"] == pytest.approx(drill["up_ts"] - last_ack, abs=0.5)
    assert back["losses"]["dropped_total"] == 0
    print(f"\nstall shown {shown_at - last_ack:.1f}s after the last ack (bound {DETECT_BOUND_S:.0f}s, ack timeout "
          f"{ACK_TIMEOUT_S:.0f}s); outage {drill['outage_s']:.1f}s")
