"""edge/DESIGN.md is the map of the tree: every module it names exists, and every module is on it.

A module is on the map when its path appears in backticks (``edge/spool/log.py``), or when a
row names a folder and lists the file by name in the same backticks group
(``edge/forward/framing.py``, ``telemetry.py``). Generated code (edge/pb) and package
``__init__`` files are not modules a reader needs to find.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DESIGN = ROOT / "edge" / "DESIGN.md"
CODE = re.compile(r"`([^`\s]+)`")


def _rows() -> list[list[str]]:
    """Backticked names, grouped by the line they stand on."""
    return [CODE.findall(line) for line in DESIGN.read_text().splitlines()]


def _named_paths() -> set[str]:
    named: set[str] = set()
    for names in _rows():
        folder = None
        for name in names:
            if "<" in name:  # a placeholder such as edge/sources/<type>/
                folder = None
            elif name.startswith("edge/"):
                named.add(name.rstrip("/"))
                folder = name.rsplit("/", 1)[0] if name.endswith(".py") else name.rstrip("/")
            elif folder and re.fullmatch(r"[a-z_0-9]+\.py", name):
                named.add(f"{folder}/{name}")
    return named


def _modules() -> set[str]:
    out = set()
    for p in (ROOT / "edge").rglob("*.py"):
        rel = p.relative_to(ROOT).as_posix()
        if rel.startswith("edge/pb/") or p.name == "__init__.py":
            continue
        out.add(rel)
    return out


def test_every_module_named_in_design_exists():
    missing = sorted(n for n in _named_paths() if not (ROOT / n).exists())
    assert not missing, f"DESIGN.md names modules or folders that do not exist: {missing}"


def test_every_module_is_on_the_map():
    named = _named_paths()
    unmapped = sorted(m for m in _modules() if m not in named)
    assert not unmapped, f"modules missing from edge/DESIGN.md: {unmapped}"


def test_the_map_states_the_five_contract_points():
    text = DESIGN.read_text()
    for point in ("emit -> commit -> ack", "seq", "watermark", "budget", "stats"):
        assert re.search(rf"\*\*{re.escape(point)}\.?\*\*", text), f"contract point {point!r} missing"
