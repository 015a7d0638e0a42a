"""The lock files: every package the image and CI install, pinned with hashes, matching pyproject.toml.

A dependency changed in pyproject.toml without `bash ops/images/lock.sh` fails here,
before the image build (--require-hashes) would.
"""

from __future__ import annotations

import re
import tomllib

from ops.composectl import ROOT

LOCK = ROOT / "ops" / "images" / "requirements.lock"
TEST_LOCK = ROOT / "ops" / "images" / "requirements-test.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse(path) -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes)."""
    out: dict[str, tuple[str, int]] = {}
    current = None
    for line in path.read_text().splitlines():
        m = PIN.match(line)
        if m:
            current = norm(m.group(1))
            out[current] = (m.group(2), 0)
        elif current and line.strip().startswith("--hash=sha256:"):
            version, n = out[current]
            out[current] = (version, n + 1)
        elif line and not line.startswith((" ", "#")):
            raise AssertionError(f"{path.name}: unexpected line {line!r}")
    return out


def pins(reqs: list[str]) -> dict[str, str]:
    return {norm(r.split("==")[0]): r.split("==")[1].strip() for r in reqs}


def test_every_locked_package_is_pinned_with_hashes():
    for path in (LOCK, TEST_LOCK):
        locked = parse(path)
        assert len(locked) > 40, path
        assert all(n > 0 for _, n in locked.values()), [k for k, (_, n) in locked.items() if n == 0]
        assert "bash ops/images/lock.sh" in path.read_text()  # the one command that refreshes it


def test_locks_match_pyproject_and_each_other():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    image, ci = parse(LOCK), parse(TEST_LOCK)
    for name, version in pins(project["dependencies"]).items():
        assert image.get(name, ("missing",))[0] == version, f"{name}=={version}: run bash ops/images/lock.sh"
    for name, version in pins(project["optional-dependencies"]["test"]).items():
        assert ci.get(name, ("missing",))[0] == version, f"{name}=={version}: run bash ops/images/lock.sh"
    # CI tests the versions the image ships.
    assert {k: v[0] for k, v in image.items()} == {k: ci[k][0] for k in image}
    assert "setuptools" in image  # the build backend too: the project is built from locked files


def test_the_image_the_wheelhouse_and_ci_install_from_the_locks():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes -r /src/requirements.lock" in dockerfile
    assert "--no-deps --no-build-isolation /src" in dockerfile
    assert "!ops/images/requirements.lock" in (ROOT / ".dockerignore").read_text()
    bootstrap = (ROOT / "ops/images/bootstrap.sh").read_text()
    download = bootstrap[bootstrap.index("pip download"):bootstrap.index("pip download failed")]
    assert "--require-hashes" in download and '-r "$lock"' in download and "lock=ops/images/requirements.lock" in bootstrap
    test_sh = (ROOT / "ops/test.sh").read_text()
    assert "lock=ops/images/requirements-test.lock" in test_sh and '--require-hashes -r "$lock"' in test_sh
