"""Hypothesis budgets for the fuzz suite: ``fuzz-ci`` (default, the whole folder well under 60 s) and ``long``.

Applied per test with ``@fuzz`` rather than loaded globally, so the other hypothesis tests keep their own
settings when the suites run together. ``HYPOTHESIS_PROFILE=long ops/fuzz.sh`` for the larger run (``FUZZ_EXAMPLES`` a target, 5,000 unless set).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = dict(
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
settings.register_profile("fuzz-ci", max_examples=100, deadline=3000, derandomize=True, **_COMMON)
settings.register_profile("long", max_examples=int(os.environ.get("FUZZ_EXAMPLES", "5000")), deadline=10_000, **_COMMON)

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "fuzz-ci")
if PROFILE not in ("fuzz-ci", "long"):
    PROFILE = "fuzz-ci"
fuzz = settings(settings.get_profile(PROFILE))
