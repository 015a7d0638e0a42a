"""Shared pytest fixtures. Import in a conftest: ``from tests.support.fixtures import emulator  # noqa: F401``."""

from __future__ import annotations

from typing import Iterator

import pytest

from simulators.kit.emulator import Emulator


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """A plaintext ZeroBus emulator on free loopback ports with a temp data dir, stopped afterwards."""
    emu = Emulator()
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()
