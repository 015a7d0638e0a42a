"""Units and metadata from the properties a server really has: ``unit_property`` (a fallback list:
EngineeringUnits, then a vendor's plain ``Unit``) and ``metadata_properties`` (Description, EURange)."""

from __future__ import annotations

import json

import pytest
from asyncua import ua

from edge.config import parse
from edge.configtypes import ConfigError
from edge.sources.opcua.resolve import unit_text
from simulators.kit.aio import running, wait_until
from simulators.opcua.server import SimServer
from tests.opcua.conftest import by_point

NS = 2
TEMP, PRES, SPEED, CURRENT = (f"ns=2;s=line1.press1.{n}" for n in ("temperature", "pressure", "motor_speed", "motor_current"))
GROUP = {"name": "g", "publishing_interval": "100ms", "sampling_interval": "0", "nodes": [TEMP, PRES, SPEED, CURRENT]}


async def _vendor_properties(sim: SimServer) -> None:
    """A server hook: the properties a third-party server publishes instead of (or besides) EngineeringUnits."""
    async def prop(nodeid: str, name: str, ns: int, value) -> None:
        node = sim.server.get_node(nodeid)
        await node.add_property(ua.NodeId(f"{ua.NodeId.from_string(nodeid).Identifier}.{name}", NS),
                                ua.QualifiedName(name, ns), value)

    eu = ua.EUInformation(NamespaceUri="http://www.opcfoundation.org/UA/units/un/cefact", UnitId=4408652,
                          DisplayName=ua.LocalizedText("degC"), Description=ua.LocalizedText("degree Celsius"))
    await prop(TEMP, "EngineeringUnits", 0, eu)
    await prop(TEMP, "Unit", NS, "K")  # EngineeringUnits comes first in the list: it wins
    await prop(PRES, "Unit", NS, "bar")  # a plain string
    await prop(SPEED, "Unit", NS, ua.LocalizedText("rpm"))  # a LocalizedText
    await prop(TEMP, "Description", 0, ua.LocalizedText("press 1 oil temperature"))
    await prop(TEMP, "EURange", 0, ua.Range(Low=0.0, High=200.0))
    # motor_current: no unit property at all


def test_unit_text_reads_euinformation_localizedtext_and_strings():
    assert unit_text(ua.EUInformation(DisplayName=ua.LocalizedText("degC"))) == "degC"
    assert unit_text(ua.EUInformation(Description=ua.LocalizedText("bar"))) == "bar"
    assert unit_text(ua.LocalizedText("rpm")) == "rpm"
    assert unit_text(" A ") == "A" and unit_text("") is None and unit_text(None) is None


@pytest.mark.parametrize("src,path", [
    ({"unit_property": []}, "sources[0].unit_property"),
    ({"unit_property": ["EngineeringUnits", "a/b"]}, "sources[0].unit_property[1]"),
    ({"metadata_properties": ["Description", ""]}, "sources[0].metadata_properties[1]"),
])
def test_bad_property_names_name_the_field(src, path):
    base = {"name": "plc", "type": "opcua", "endpoint": "opc.tcp://127.0.0.1:4840", "groups": [{"nodes": ["ns=2;s=A"]}]}
    with pytest.raises(ConfigError) as exc:
        parse({"appliance_id": "a1", "sources": [{**base, **src}]}, env={})
    assert exc.value.path == path


async def _units(rig, **options) -> dict[str, set[str]]:
    """Run a source with ``options`` against a server with vendor properties: the units each point landed with."""
    sim = await SimServer(nodes=5, rate=50, faults=False, extras=False, units=False).start()
    try:
        await _vendor_properties(sim)
        async with running(rig.source(sim.endpoint, [GROUP], **options)):
            await wait_until(lambda: set(by_point(rig.readings())) == set(GROUP["nodes"]), timeout=30, what="every node")
    finally:
        await sim.stop()
    return {p: {r.unit for r in rs} for p, rs in by_point(rig.readings()).items()}


@pytest.mark.anyio
@pytest.mark.timeout(90)
async def test_unit_from_a_plain_unit_property_and_metadata_properties(rig):
    units = await _units(rig, unit_property=["EngineeringUnits", "Unit"], metadata_properties=["Description", "EURange"])
    assert units == {TEMP: {"degC"}, PRES: {"bar"}, SPEED: {"rpm"}, CURRENT: {""}}, units
    meta = json.loads((rig.tmp_path / "data" / "plc.opcua-metadata.json").read_text())
    assert meta[TEMP] == {"unit": "degC", "Description": "press 1 oil temperature",
                          "EURange": {"Low": 0.0, "High": 200.0}}, meta[TEMP]
    assert meta[PRES] == {"unit": "bar"} and CURRENT not in meta
    assert rig.statuses["plc"].data["metadata_points"] == 3


@pytest.mark.anyio
@pytest.mark.timeout(90)
async def test_the_default_reads_engineering_units_only(rig):
    units = await _units(rig)
    assert units == {TEMP: {"degC"}, PRES: {""}, SPEED: {""}, CURRENT: {""}}, units
    assert not (rig.tmp_path / "data" / "plc.opcua-metadata.json").exists()
