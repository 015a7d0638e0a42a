#!/bin/sh
# The fuzz suite (tests/fuzz/) with a larger budget than CI's: every parser fed hostile input.
#
#   ops/fuzz.sh                     HYPOTHESIS_PROFILE=long (5,000 examples a target), statistics at the end
#   HYPOTHESIS_PROFILE=fuzz-ci ops/fuzz.sh   the CI budget (100 a target, fixed seed, < 60 s)
#   FUZZ_EXAMPLES=1000 ops/fuzz.sh  another budget for the long profile
#   ops/fuzz.sh -k sparkplug        extra arguments go to pytest
#
# A failure prints the falsifying example and a @reproduce_failure blob; keep the example as an
# @example(...) on the target (or a plain test) with the fix.
set -eu
cd "$(dirname "$0")/.."
export HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-long}"
PY="${PYTHON:-.venv/bin/python}"
exec env PYTHONPATH=. "$PY" -m pytest -q -p no:cacheprovider --hypothesis-show-statistics tests/fuzz "$@"
