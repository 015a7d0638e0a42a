"""Emulator conformance tests: the real ZeroBus SDK against ``python -m simulators.zerobus``."""

from __future__ import annotations

import itertools
from typing import Iterator

import pytest

from simulators.kit.emulator import Emulator
from tests.support.fixtures import emulator  # noqa: F401  (re-exported fixture)

_ids = itertools.count()


@pytest.fixture(scope="module")
def shared_emulator() -> Iterator[Emulator]:
    """One emulator for a whole module; tests use their own appliance ids and clear faults."""
    emu = Emulator()
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def emu(shared_emulator: Emulator) -> Iterator[Emulator]:
    shared_emulator.clear_faults()
    yield shared_emulator
    shared_emulator.clear_faults()


@pytest.fixture
def appliance_id(request: pytest.FixtureRequest) -> str:
    """A fresh appliance id per test, so /stats of a shared emulator stays separable."""
    return f"{request.node.name[:40]}-{next(_ids)}"
