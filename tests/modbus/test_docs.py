"""modbus/README.md stays true: the sample parses, matches the simulator's map, and every option is explained."""

import dataclasses
import re
from pathlib import Path

import yaml

from edge.config import parse
from edge.sources.modbus import regmap
from edge.sources.modbus.collector import Config, DeviceConfig, PointConfig
from edge.sources.modbus.config import ArrayConfig

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "edge/sources/modbus/README.md").read_text()


def sample() -> dict:
    (block,) = re.findall(r"```yaml\n(.*?)```", README, re.S)
    return yaml.safe_load(block)


def test_sample_config_parses_and_plans():
    cfg = parse(sample(), env={})
    (src,) = cfg.sources
    assert isinstance(src, Config) and len(src.points) == 48
    assert len(src.blocks) == 18  # per device: coils, discrete inputs, input registers, 3 holding blocks


def test_sample_matches_simulator_map():
    plant_map = yaml.safe_load((ROOT / "simulators/modbus/plant_map.yaml").read_text())
    assert sample()["sources"][0]["devices"] == plant_map["devices"]


def test_every_option_is_documented():
    for cls in (Config, DeviceConfig, PointConfig):
        for f in dataclasses.fields(cls):
            assert f"| `{f.name}` |" in README, f"{cls.__name__}.{f.name} missing from modbus/README.md"
    for f in dataclasses.fields(ArrayConfig):
        assert f"`{f.name}`" in README.split("### Arrays")[1].split("### CSV")[0], f"ArrayConfig.{f.name}"


def test_register_map_spellings_are_documented():
    csv_section = README.split("### CSV (`devices[].register_map`)")[1].split("\n## ")[0]
    for key, spellings in [*regmap.COLUMNS.items(), *regmap.TABLE_VALUES.items(), *regmap.TYPE_VALUES.items()]:
        row = next((line for line in csv_section.splitlines() if line.startswith(f"| `{key}` |")), None)
        assert row is not None, key
        for spelling in spellings:
            assert f"`{spelling}`" in row, (key, spelling)


def test_every_source_option_appears_in_the_sample():
    keys = set(sample()["sources"][0])
    for f in dataclasses.fields(Config):
        assert f.name in keys or f.name == "enabled", f.name
