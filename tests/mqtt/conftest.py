from __future__ import annotations

from typing import Iterator

import pytest

from simulators.kit.broker import Broker
from tests.support.fixtures import emulator  # noqa: F401


@pytest.fixture
def broker() -> Iterator[Broker]:
    """The shipped Mosquitto config on a free loopback port, users edge and sim1..sim4."""
    b = Broker()
    b.start()
    try:
        yield b
    finally:
        b.cleanup()
