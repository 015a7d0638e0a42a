"""Fixtures for the Compose end-to-end tests: a real Docker Engine, the images
built locally by ops/images/bootstrap.sh, one uniquely named project per test.

They run `docker compose` (v2), the command users type (ops/test.sh installs it:
ops/images/compose-v2.sh); one smoke test runs docker-compose 1.29 (`compose_v1`).
No Docker Engine or Compose: the tests FAIL under CI=true (the CI machine must
have them) and are skipped, loudly, elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid

import pytest

from ops.composectl import COMPOSE_V1, COMPOSE_V2, ROOT, Compose, docker_available, have

FILES = ["docker-compose.yml", "docker-compose.test.yml"]
ENV_FILE = ROOT / "tests" / "compose" / "test.env"
APPLIANCE_ID = "compose-test-1"  # tests/compose/test.env
# The image docker_images builds (compose build reads EDGE_IMAGE from the env file).
EDGE_IMAGE = next(line.split("=", 1)[1].strip() for line in ENV_FILE.read_text().splitlines()
                  if line.startswith("EDGE_IMAGE="))
BUILD_SERVICE = "zerobus"  # every Python service shares this one image


# Figures worth seeing on every run (not only with -s): printed in the terminal summary.
FIGURES: list[str] = []


def figure(line: str) -> None:
    FIGURES.append(line)
    print(line)


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("compose figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "compose_tool" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.docker)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _require(tool: tuple[str, ...], install: str) -> tuple[str, ...]:
    """A Docker Engine and this Compose, or FAIL under CI=true / a loud skip elsewhere."""
    if not docker_available() or not have(tool):
        msg = (f"NO USABLE DOCKER ENGINE / `{' '.join(tool)}`: Compose end-to-end tests did not run "
               f"(docker daemon: {'up' if docker_available() else 'missing'}; {install})")
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        sys.stderr.write(f"\n!!! {msg}\n")
        pytest.skip(msg)
    return tool


@pytest.fixture(scope="session")
def compose_tool():
    return _require(COMPOSE_V2, "install it with: bash ops/images/compose-v2.sh")


@pytest.fixture(scope="session")
def compose_v1(docker_images):
    return _require(COMPOSE_V1, "apt-get install docker-compose (Debian bookworm: 1.29)")


@pytest.fixture(scope="session")
def docker_images(compose_tool):
    """Bootstrap the local stand-ins (idempotent) and build the appliance image once."""
    t0 = time.monotonic()
    proc = subprocess.run(["bash", "ops/images/bootstrap.sh"], cwd=ROOT, capture_output=True, text=True, timeout=1500)
    print(proc.stdout, proc.stderr, sep="")
    if proc.returncode != 0:
        pytest.fail(f"ops/images/bootstrap.sh failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    builder = Compose(f"zbebuild{os.getpid()}", FILES, env_file=ENV_FILE, tool=compose_tool)
    builder.build(BUILD_SERVICE)
    figure(f"bootstrap + image build: {time.monotonic() - t0:.1f}s (compose tool: {' '.join(builder.tool)})")
    return builder


@contextlib.contextmanager
def new_stack(tool: tuple[str, ...]):
    """A fresh project (own networks and volumes); torn down with `down -v` whatever happens."""
    project = f"zbe{os.getpid()}{uuid.uuid4().hex[:8]}"
    c = Compose(project, FILES, env_file=ENV_FILE, tool=tool,
                env={"ADMIN_PORT": str(free_port()), "ZEROBUS_HTTP_PORT": str(free_port())})
    try:
        yield c
    finally:
        # Shown by pytest only when the test failed.
        print(c.logs(tail=80))
        c.down(volumes=True)


@pytest.fixture
def stack(docker_images, compose_tool):
    with new_stack(compose_tool) as c:
        yield c


@pytest.fixture
def stack_v1(compose_v1):
    """The same, driven by docker-compose 1.29: the files stay in the subset both accept."""
    with new_stack(compose_v1) as c:
        yield c
