"""The docs name real things: every test DURABILITY.md cites exists, and the README's commands are real."""

from __future__ import annotations

import re
from pathlib import Path

from edge.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


def cited_tests() -> list[tuple[str, str | None]]:
    out = []
    for line in (ROOT / "DURABILITY.md").read_text().splitlines():
        if not line.startswith("| ") or line.startswith("| hop"):
            continue
        last_file = None
        for ref in re.findall(r"`([^`]+)`", line.rsplit("|", 2)[-2]):
            ref = ref.split(" ")[0]
            if ref.startswith("tests/"):
                path, _, name = ref.partition("::")
                last_file = path
                out.append((path, name or None))
            elif ref.startswith("::") and last_file:
                out.append((last_file, ref[2:]))
    return out


def test_every_durability_row_names_a_test_that_exists():
    cited = cited_tests()
    rows = [ln for ln in (ROOT / "DURABILITY.md").read_text().splitlines()
            if ln.startswith("| ") and not ln.startswith("| hop") and not ln.startswith("|---")]
    assert len(cited) >= len(rows) >= 20
    for path, name in cited:
        f = ROOT / path
        assert f.exists(), path
        if name:
            assert re.search(rf"def {re.escape(name.split('[')[0])}\b", f.read_text()), f"{path}::{name}"


def test_readme_commands_exist():
    readme = (ROOT / "README.md").read_text()
    assert "docker compose up" in readme and "bash ops/test.sh" in readme
    assert "exec bash ops/test.sh" in (ROOT / ".ci" / "run").read_text()
    commands = set(build_parser()._subparsers._group_actions[0].choices)  # noqa: SLF001
    for cmd in re.findall(r"^edge ([a-z-]+)", readme, re.M):
        assert cmd in commands, cmd
