"""Every protocol folder has the same shape, like a plugin tree: collector, config model, pure
decode/plan code, a README documenting every option, a sample config; readings reach the spool
only through the sink, and every source reports through the one ``SourceStatus``."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import re
from pathlib import Path

import pytest

from edge.config import SOURCE_TYPES

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ROOT / "edge" / "sources"

# The pure modules of each protocol: decoding and planning without I/O (synthetic has nothing to decode).
PURE = {
    "mqtt": ["parse", "pointmeta", "sparkplug"],
    "modbus": ["plan", "decode", "regmap", "codes"],
    "opcua": ["map"],
    "http": ["wire", "body", "ignition", "throttle"],
    "synthetic": [],
}
IO_MODULES = {"socket", "ssl", "sqlite3", "threading", "subprocess", "asyncio", "paho", "pymodbus", "urllib",
              "http.server", "http.client", "edge.writer", "edge.spool"}
# The option table of a folder's README, where it is one table (opcua's is split by topic and checked by
# tests/opcua/test_docs.py; synthetic's options are in the main README's sources table).
OPTION_TABLES = {"mqtt": "## Options", "modbus": "### Source", "http": "## Options"}


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
    return out


def test_every_type_has_a_folder_and_every_folder_a_type():
    folders = {p.name for p in SOURCES.iterdir() if (p / "__init__.py").exists()}
    assert folders == set(SOURCE_TYPES) == set(PURE)
    assert all(SOURCE_TYPES[t] == f"edge.sources.{t}" for t in SOURCE_TYPES)


@pytest.mark.parametrize("proto", sorted(SOURCE_TYPES))
def test_the_folder_has_collector_config_readme_and_sample(proto):
    folder = SOURCES / proto
    for name in ("collector.py", "config.py", "README.md", "sample.yaml"):
        assert (folder / name).is_file(), f"edge/sources/{proto}/{name} is missing"
    pkg = importlib.import_module(SOURCE_TYPES[proto])
    assert pkg.Config is importlib.import_module(f"{SOURCE_TYPES[proto]}.config").Config
    assert pkg.Source is importlib.import_module(f"{SOURCE_TYPES[proto]}.collector").Source


@pytest.mark.parametrize("proto", sorted(SOURCE_TYPES))
def test_the_pure_modules_do_no_io(proto):
    for name in PURE[proto]:
        path = SOURCES / proto / f"{name}.py"
        bad = sorted(m for m in _imports(path) if any(m == io or m.startswith(io + ".") for io in IO_MODULES))
        assert bad == [], f"edge/sources/{proto}/{name}.py imports {bad}"


@pytest.mark.parametrize("proto", sorted(SOURCE_TYPES))
def test_the_readme_documents_every_option(proto):
    text = (SOURCES / proto / "README.md").read_text()
    cfg = importlib.import_module(f"{SOURCE_TYPES[proto]}.config").Config
    missing = [f.name for f in dataclasses.fields(cfg) if f"`{f.name}" not in text]
    assert missing == [], f"edge/sources/{proto}/README.md does not document {missing}"


@pytest.mark.parametrize("proto", sorted(OPTION_TABLES))
def test_the_readme_option_table_lists_exactly_the_options(proto):
    """One row per option of the config model, and no row for an option it does not have."""
    section = (SOURCES / proto / "README.md").read_text().split(OPTION_TABLES[proto], 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+)` \|", section, re.M)
    cfg = importlib.import_module(f"{SOURCE_TYPES[proto]}.config").Config
    assert sorted(rows) == sorted(f.name for f in dataclasses.fields(cfg)), f"edge/sources/{proto}/README.md"


def test_sources_reach_the_spool_only_through_the_sink():
    """No collector holds the writer or the spool: it gets a SourceContext (emit / submit / quarantine /
    wait_for_space, edge/sources/sink.py) and its SourceStatus from the runner. From the writer and the
    spool a source may name only the refusal and two constants."""
    allowed = {"SpoolFull", "AppendResult", "QUARANTINE_RAW_MAX"}
    seen = []
    for path in SOURCES.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module in ("edge.writer", "edge.spool"):
                seen.append(path.name)
                names = {a.name for a in node.names}
                assert names <= allowed, f"{path.relative_to(ROOT)} imports {names - allowed} from {node.module}"
            elif isinstance(node, ast.Import):
                assert not any(a.name in ("edge.writer", "edge.spool") for a in node.names), path
            elif isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("SourceStatus", "SpoolWriter"):
                assert path.name == "status.py", f"{path.relative_to(ROOT)} makes its own {node.func.id}"
    assert seen, "the scan found no import from the writer at all: has it changed?"


def test_every_collector_takes_the_same_arguments():
    import inspect

    for proto, module in sorted(SOURCE_TYPES.items()):
        source = importlib.import_module(f"{module}.collector").Source
        assert list(inspect.signature(source.__init__).parameters) == ["self", "cfg", "ctx"], proto
        assert inspect.iscoroutinefunction(source.run) and list(inspect.signature(source.run).parameters) == ["self"]
