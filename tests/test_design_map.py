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


def _subcommands() -> dict[str, set[str]]:
    """``edge``'s commands, each with its own sub-commands (empty when it has none)."""
    import argparse

    from edge.cli import build_parser

    def choices(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        for action in parser._actions:  # argparse keeps its sub-parsers here and nowhere public
            if isinstance(action, argparse._SubParsersAction):
                return dict(action.choices)
        return {}

    return {name: set(choices(sub)) for name, sub in choices(build_parser()).items()}


def test_every_command_the_map_names_exists():
    commands = _subcommands()
    named = []
    for name in re.findall(r"`edge ([^`]+)`", DESIGN.read_text()):
        for part in name.split(" / "):  # `edge run / check-config / spool stats|inspect ...`
            words = [w for w in part.split() if not w.startswith("-") and w != "..."]
            if not words:
                continue
            named.append(words[0])
            assert words[0] in commands, f"DESIGN.md names `edge {words[0]}`, which is no command"
            for sub in (words[1].split("|") if len(words) > 1 else []):
                assert sub in commands[words[0]], f"DESIGN.md names `edge {words[0]} {sub}`, which is no command"
    assert {"run", "check-config", "doctor", "spool"} <= set(named)


def test_every_dotted_name_and_path_the_map_names_exists():
    import importlib

    from edge.sources.states import State

    for names in _rows():
        for name in names:
            if re.fullmatch(r"edge(\.[A-Za-z_]+)+", name):
                module, _, attr = name.rpartition(".")
                try:
                    importlib.import_module(name)
                except ModuleNotFoundError:
                    assert hasattr(importlib.import_module(module), attr), f"DESIGN.md names `{name}`"
            elif re.fullmatch(r"(proto|simulators|ops|tests)/[\w./]*", name):
                assert (ROOT / name).exists(), f"DESIGN.md names `{name}`, which does not exist"
    states = {s.value for s in State}
    for state in ("auth_failed", "tls_error", "connect_failed", "blocked", "disk_full"):
        assert state in states and f"`{state}`" in DESIGN.read_text()


def test_the_map_claims_no_interface_that_does_not_exist():
    """The source interface it describes is the real one: ``Source(cfg, ctx)`` with ``run(self)``,
    readings through ``ctx.emit``; no ``run(self, emit)`` and no ``forward`` / ``collect`` commands."""
    import inspect

    from edge.sources.context import SourceContext
    from edge.sources.synthetic.collector import Source

    text = DESIGN.read_text()
    assert "run(self, emit)" not in text
    assert not {"forward", "collect"} & set(_subcommands())
    assert "SourceContext.emit(items)" in text and "emit" in {f for f in SourceContext.__dataclass_fields__}
    assert list(inspect.signature(Source.run).parameters) == ["self"]


def test_a_module_over_400_lines_says_why_at_its_top():
    """"No module over ~400 lines without a reason written at its top": the module docstring says
    how big it is and why (``Size: ~530 lines, on purpose: ...`` or ``Over 400 lines: ...``)."""
    import ast

    long = []
    for p in sorted((ROOT / "edge").rglob("*.py")):
        if p.relative_to(ROOT).as_posix().startswith("edge/pb/"):
            continue
        n = len(p.read_text().splitlines())
        if n > 400:
            doc = ast.get_docstring(ast.parse(p.read_text())) or ""
            if not re.search(r"(Size: ~?\d+ lines|Over 400 lines)", doc):
                long.append(f"{p.relative_to(ROOT)} ({n} lines)")
    assert long == [], f"long modules without a reason at the top: {long}"
