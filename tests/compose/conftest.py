"""Fixtures for the Compose end-to-end tests: a real Docker Engine, the images
built locally by ops/images/bootstrap.sh, one uniquely named project per test.

No Docker Engine: the tests FAIL under CI=true (the CI machine must have one)
and are skipped, loudly, elsewhere.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid

import pytest

from ops.composectl import ROOT, Compose, compose_command, docker_available

FILES = ["docker-compose.yml", "docker-compose.test.yml"]
ENV_FILE = ROOT / "tests" / "compose" / "test.env"
APPLIANCE_ID = "compose-test-1"  # tests/compose/test.env
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


@pytest.fixture(scope="session")
def compose_tool():
    """A Docker Engine and a Compose tool, or FAIL under CI=true / a loud skip elsewhere."""
    if not docker_available() or compose_command() is None:
        msg = ("NO USABLE DOCKER ENGINE / COMPOSE: the Compose end-to-end tests did not run "
               f"(docker daemon: {'up' if docker_available() else 'missing'}, compose: {compose_command()})")
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        sys.stderr.write(f"\n!!! {msg}\n")
        pytest.skip(msg)
    return compose_command()


@pytest.fixture(scope="session")
def docker_images(compose_tool):
    """Bootstrap the local stand-ins (idempotent) and build the appliance image once."""
    t0 = time.monotonic()
    proc = subprocess.run(["bash", "ops/images/bootstrap.sh"], cwd=ROOT, capture_output=True, text=True, timeout=1500)
    print(proc.stdout, proc.stderr, sep="")
    if proc.returncode != 0:
        pytest.fail(f"ops/images/bootstrap.sh failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    builder = Compose(f"zbebuild{os.getpid()}", FILES, env_file=ENV_FILE)
    builder.build(BUILD_SERVICE)
    figure(f"bootstrap + image build: {time.monotonic() - t0:.1f}s (compose tool: {' '.join(builder.tool)})")
    return builder


@pytest.fixture
def stack(docker_images):
    """A fresh project (own networks and volumes); torn down with `down -v` whatever happens."""
    project = f"zbe{os.getpid()}{uuid.uuid4().hex[:8]}"
    c = Compose(project, FILES, env_file=ENV_FILE, env={"ADMIN_PORT": str(free_port()), "ZEROBUS_HTTP_PORT": str(free_port())})
    try:
        yield c
    finally:
        # Shown by pytest only when the test failed.
        print(c.logs(tail=80))
        c.down(volumes=True)
