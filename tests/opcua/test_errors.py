"""Bad config and bad nodes give clear errors and visible state; good nodes keep flowing."""

from __future__ import annotations

import socket

import pytest

from edge.config import parse
from edge.configtypes import ConfigError
from simulators.opcua.server import SimServer
from simulators.kit.aio import running, wait_until


def _cfg(**src):
    base = {"name": "plc", "type": "opcua", "endpoint": "opc.tcp://127.0.0.1:4840",
            "groups": [{"nodes": ["ns=2;s=A"]}]}
    return parse({"appliance_id": "a1", "sources": [{**base, **src}]}, env={})


@pytest.mark.parametrize("src,path,words", [
    ({"endpoint": "http://plc:4840"}, "sources[0].endpoint", "opc.tcp://"),
    ({"endpoint": "opc.tcp://user:pw@plc:4840"}, "sources[0].endpoint", "username/password"),
    ({"groups": []}, "sources[0].groups", "at least one"),
    ({"groups": [{"name": "g"}]}, "sources[0].groups[0]", "at least one of nodes"),
    ({"groups": [{"nodes": ["Line1.Temp"]}]}, "sources[0].groups[0].nodes[0]", "not a NodeId"),
    ({"groups": [{"nodes": ["ns=2;s=A"], "deadband_type": "percent", "deadband_value": 150}]},
     "sources[0].groups[0].deadband_value", "<= 100"),
    ({"groups": [{"nodes": ["ns=2;s=A"], "publishing_interval": "1ms"}]}, "sources[0].groups[0].publishing_interval", "10ms"),
    ({"security": {"mode": "Encrypt"}}, "sources[0].security.mode", "SignAndEncrypt"),
    ({"password": "x"}, "sources[0].password", "username"),
    ({"watchdog_interval": "500ms"}, "sources[0].watchdog_interval", "2-5s"),
    ({"max_buffered": 10}, "sources[0].max_buffered", "emit_max"),
    ({"groups": [{"nodes": ["ns=2;s=A"], "folders": [{"root": "Plant", "max_depth": 0}]}]},
     "sources[0].groups[0].folders[0].max_depth", "between"),
    ({"polling": True}, "sources[0].polling", "unknown key"),
])
def test_config_errors_name_the_field(src, path, words):
    with pytest.raises(ConfigError) as exc:
        _cfg(**src)
    assert exc.value.path == path and words in exc.value.message


def test_password_is_not_shown_in_errors_or_repr():
    cfg = _cfg(username="op", password="hunter2-secret")
    assert "hunter2-secret" not in repr(cfg.sources[0])
    with pytest.raises(ConfigError) as exc:
        _cfg(username="op", password=["hunter2-secret"])
    assert "hunter2-secret" not in str(exc.value)


@pytest.mark.anyio
@pytest.mark.timeout(90)
async def test_unknown_nodes_are_reported_and_good_ones_flow(rig):
    sim = await SimServer(nodes=27, rate=50, faults=False).start()
    try:
        src = rig.source(sim.endpoint, [{
            "name": "g", "publishing_interval": "100ms",
            "nodes": ["ns=2;s=line1.press1.temperature", "ns=2;s=no.such.node", "ns=9;i=42"],
            "browse_paths": ["Plant/line1/press1/pressure", "Plant/line1/press9/pressure"],
            "folders": [{"root": "Plant/line1", "include": ["*/nothing_matches_this"]}],
        }])
        status = rig.statuses
        async with running(src):
            await wait_until(lambda: status["plc"].data["state"] == "running", what="running")
            await wait_until(lambda: {r.point for r in rig.readings()} >= {
                "ns=2;s=line1.press1.temperature", "Plant/line1/press1/pressure"}, what="good nodes flow")
        snap = status["plc"].snapshot()
        assert snap["failed_count"] == 4
        failed = "\n".join(snap["failed_nodes"])
        assert "ns=2;s=no.such.node: BadNodeIdUnknown" in failed
        assert "ns=9;i=42: BadNodeIdUnknown" in failed
        assert "Plant/line1/press9/pressure" in failed and "press9" in failed
        assert "folder Plant/line1: no variable below it matches" in failed
        assert "2 of 4 nodes subscribed" in snap["detail"] and "4 failed" in snap["detail"]
        assert snap["errors_total"] >= 1 and "not subscribed" in snap["last_error"]
    finally:
        await sim.stop()


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_unreachable_server_is_visible_and_retried(rig):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = rig.source(f"opc.tcp://127.0.0.1:{port}", [{"nodes": ["ns=2;s=x"]}])
    async with running(src):
        await wait_until(lambda: rig.statuses["plc"].data["errors_total"] >= 2, what="two attempts")
    snap = rig.statuses["plc"].snapshot()
    assert snap["state"] == "connect_failed"
    assert "refused" in snap["last_error"].lower() or "connect" in snap["last_error"].lower()
    assert rig.readings() == []


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_no_node_subscribable_is_an_error_state(rig):
    sim = await SimServer(nodes=5, rate=0, faults=False, extras=False).start()
    try:
        src = rig.source(sim.endpoint, [{"nodes": ["ns=2;s=nope"]}])
        async with running(src):
            await wait_until(lambda: "no node could be subscribed" in (rig.statuses["plc"].data["last_error"] or ""),
                             what="error state")
        assert rig.statuses["plc"].data["state"] in ("disconnected", "connecting")
    finally:
        await sim.stop()
