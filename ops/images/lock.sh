#!/usr/bin/env bash
# Refreshes the lock files: every package the image and CI install, pinned, with hashes.
#
#   bash ops/images/lock.sh        # after any change to the dependencies in pyproject.toml
#
#   ops/images/requirements.lock        the image: [project] dependencies + the build backend
#                                       (setuptools, wheel) -- Dockerfile, ops/images/bootstrap.sh
#   ops/images/requirements-test.lock   CI and developers: the same + the [test] extra -- ops/test.sh
#
# Both are resolved for CPython 3.11 on Linux x86_64 (the image's Python and CI's) by
# pip-compile (pip-tools), which lists the hash of every file of each pinned version, so the
# same lock serves pip install from PyPI and pip download of manylinux wheels for the
# offline wheelhouse. pip then installs with --require-hashes: a package that is not in the
# lock, or whose file does not match, fails the install.
# pip-tools runs from a virtualenv of its own (ops/images/.cache/lock-venv), never the project's.
set -euo pipefail
cd "$(dirname "$0")/../.."
PIP_TOOLS=${PIP_TOOLS_VERSION:-7.6.2}
py=${PYTHON:-python3}
venv=ops/images/.cache/lock-venv

"$py" -c 'import sys; assert sys.version_info[:2] == (3, 11), f"lock for the image Python 3.11, not {sys.version}"' \
  || { echo "lock.sh: run with a Python 3.11 (PYTHON=...): the image and CI use 3.11" >&2; exit 1; }
if [ ! -x "$venv/bin/pip-compile" ] || ! "$venv/bin/pip-compile" --version | grep -q " $PIP_TOOLS\b"; then
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install -q "pip-tools==$PIP_TOOLS"
fi

compile() { # output, extra args...
  local out=$1; shift
  # --all-build-deps: setuptools/wheel of [build-system] too, so the project itself is
  # built from locked files (pip install --no-build-isolation). --allow-unsafe: pin them.
  CUSTOM_COMPILE_COMMAND="bash ops/images/lock.sh" "$venv/bin/pip-compile" -q --generate-hashes --allow-unsafe \
    --strip-extras --no-emit-index-url --no-emit-find-links --all-build-deps --resolver backtracking --rebuild \
    -o "$out" "$@" pyproject.toml
}
compile ops/images/requirements.lock
compile ops/images/requirements-test.lock --extra test
for f in ops/images/requirements.lock ops/images/requirements-test.lock; do
  echo "lock.sh: $f: $(grep -c '^[A-Za-z0-9]' "$f") packages, $(grep -c -- '--hash=' "$f") hashes"
done
