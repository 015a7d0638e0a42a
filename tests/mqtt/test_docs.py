"""mqtt/README.md documents every option and its sample config is valid."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from edge.config import parse
from edge.configtypes import field_names
from edge.sources.mqtt.collector import Config
from edge.sources.mqtt.parse import JsonMapping, Subscription

README = Path(__file__).resolve().parents[2] / "edge" / "sources" / "mqtt" / "README.md"


def _table_keys(text: str, heading: str) -> set[str]:
    section = text.split(heading, 1)[1].split("\n#", 1)[0]
    return set(re.findall(r"^\| `([a-z_]+)` \|", section, re.M))


def test_every_option_is_documented():
    text = README.read_text()
    assert _table_keys(text, "## Options") == {f for f in field_names(Config) if "." not in f}
    assert _table_keys(text, "### Subscriptions") == set(field_names(Subscription)) - {
        f for f in field_names(Subscription) if "." in f}
    assert _table_keys(text, "### JSON mapping") == set(field_names(JsonMapping))


def test_sample_parses():
    text = README.read_text()
    sample = re.search(r"## Sample\n\n```yaml\n(.*?)```", text, re.S).group(1)
    cfg = parse({"appliance_id": "a1", **yaml.safe_load(sample)}, env={"MQTT_PASSWORD": "x" * 16})
    src = cfg.sources[0]
    assert [s.format for s in src.subscriptions] == ["json", "number", "sparkplug"]
