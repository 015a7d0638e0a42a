"""mqtt/README.md documents every option and its sample config is valid."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from edge.config import parse
from edge.configtypes import field_names
from edge.sources.mqtt.collector import Config
from edge.sources.mqtt.parse import JsonMapping, Subscription
from edge.sources.mqtt.pointmeta import TYPE_SPELLINGS, MetadataMapping

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
    assert _table_keys(text, "### Metadata topics") >= set(field_names(MetadataMapping))


def test_metadata_type_spellings_are_documented():
    section = README.read_text().split("### Metadata topics", 1)[1].split("\n### ", 1)[0]
    for t, spellings in TYPE_SPELLINGS.items():
        row = next(line for line in section.splitlines() if line.startswith(f"| `{t}` |"))
        assert all(f"`{s}`" in row for s in spellings), t


def test_the_edge_commands_named_exist():
    """README-mqtt once named `edge spool quarantined`; the command is `edge spool quarantine`."""
    from edge.cli import build_parser

    spool = next(a for a in build_parser()._subparsers._group_actions[0].choices["spool"]._actions
                 if a.dest == "spool_command")
    named = set(re.findall(r"`edge spool ([a-z-]+)", README.read_text()))
    assert named and named <= set(spool.choices), named - set(spool.choices)


def test_sample_parses():
    text = README.read_text()
    sample = re.search(r"## Sample\n\n```yaml\n(.*?)```", text, re.S).group(1)
    cfg = parse({"appliance_id": "a1", **yaml.safe_load(sample)}, env={"MQTT_PASSWORD": "x" * 16})
    src = cfg.sources[0]
    assert [s.format for s in src.subscriptions] == ["json", "number", "sparkplug"]
