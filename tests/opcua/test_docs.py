"""opcua/README.md documents every option, and its sample config is valid."""

from __future__ import annotations

from pathlib import Path

import yaml

from edge.config import parse
from edge.configtypes import field_names
from edge.sources.opcua import Config, FolderSpec, GroupConfig

README = Path(__file__).resolve().parents[2] / "edge" / "sources" / "opcua" / "README.md"


def test_every_option_is_documented():
    text = README.read_text()
    names = set(field_names(Config)) - {"security", "backfill"}  # documented through their keys
    names |= {f"groups[].{n}" for n in field_names(GroupConfig)}
    names |= {f"groups[].folders[].{n}" for n in field_names(FolderSpec)}
    missing = sorted(n for n in names if f"`{n}`" not in text)
    assert not missing, f"undocumented options: {missing}"


def test_sample_config_parses():
    block = README.read_text().split("```yaml", 1)[1].split("```", 1)[0]
    cfg = parse({"appliance_id": "edge-1", **yaml.safe_load(block)}, env={"OPCUA_PASSWORD": "x"})
    src = cfg.sources[0]
    assert src.security.mode == "SignAndEncrypt" and len(src.groups) == 2
    assert src.groups[1].folders[0].exclude == ["*/info/*", "*/Diagnostics/*"]
