"""The whole hostile-input catalogue against one `edge run` (tests/ignition/catalogue.py), with a CI fuzz budget."""

from __future__ import annotations

import io

from .catalogue import run


def test_the_catalogue_crashes_nothing_and_loses_no_reading(tmp_path):
    out = io.StringIO()
    k = run(tmp_path, fuzz_examples=100, out=out)
    report = out.getvalue()
    assert k["cases"] >= 60 and k["fuzz"] == 100, report
    assert k["crashes"] == [] and k["unexpected"] == [], report
    assert k["sent"] > 300 and k["stored"] + k["quarantined"] == k["sent"], report
    assert k["lost"] == [] and k["answered_200_missing"] == [] and k["duplicates"] == [], report
    assert k["tracebacks"] == 0 and k["secrets_in_log"] == 0, report
