"""The README option tables show the schema's defaults: every literal default cell equals the model's default.

(Which keys each table lists is checked by tests/*/test_docs.py; this checks what they say the default is.)
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml
from pydantic import TypeAdapter

from edge.admin.settings import AdminConfig
from edge.configtypes import fields_of
from edge.sources.http.config import Config as HttpConfig
from edge.sources.modbus.config import Config as ModbusConfig
from edge.sources.modbus.config import DeviceConfig, PointConfig
from edge.sources.mqtt.config import Config as MqttConfig
from edge.sources.mqtt.parse import JsonMapping, Subscription
from edge.sources.opcua.config import Config as OpcuaConfig

ROOT = Path(__file__).resolve().parents[2]
TABLES = [
    ("edge/sources/mqtt/README.md", "## Options", MqttConfig),
    ("edge/sources/mqtt/README.md", "### Subscriptions", Subscription),
    ("edge/sources/mqtt/README.md", "### JSON mapping", JsonMapping),
    ("edge/sources/modbus/README.md", "### Source", ModbusConfig),
    ("edge/sources/modbus/README.md", "### Device", DeviceConfig),
    ("edge/sources/modbus/README.md", "### Point", PointConfig),
    ("edge/sources/opcua/README.md", "## Options", OpcuaConfig),
    ("edge/sources/http/README.md", "## Options", HttpConfig),
    ("edge/admin/README.md", "## Configuration", AdminConfig),
]


def literal_defaults(path: str, heading: str) -> dict[str, str]:
    """key -> default cell of a `| `key` | `default` | meaning |` table, where the default is one literal."""
    section = (ROOT / path).read_text().split(heading, 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+)` \| `([^`<]*)` \|", section, re.M)
    return dict(rows)


def compare(path: str, heading: str, cls: type) -> int:
    """How many documented defaults were compared; fails on the first that differs from the schema."""
    defaults = {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
    compared = 0
    for key, cell in literal_defaults(path, heading).items():
        if key not in defaults:
            continue
        adapter = TypeAdapter(fields_of(cls)[key])
        if len(cell) >= 2 and cell[0] == cell[-1] and cell[0] in "\"'":
            cell = cell[1:-1]  # a quoted string: `""`
        try:
            value = adapter.validate_python(cell)  # by the field's type, as a ${VAR} would be
        except ValueError:
            value = adapter.validate_python(yaml.safe_load(cell))
        assert value == defaults[key], f"{path} {heading}: {key} documented as {cell!r}, schema says {defaults[key]!r}"
        compared += 1
    return compared


@pytest.mark.parametrize("path, heading, cls", TABLES, ids=[f"{p}:{h}" for p, h, _ in TABLES])
def test_documented_defaults_are_the_schema_defaults(path, heading, cls):
    compare(path, heading, cls)


def test_the_tables_are_read():
    assert sum(compare(*t) for t in TABLES) >= 50, "fewer defaults found: has the tables' format changed?"
