"""edge/admin/README.md must not drift from the code: metric names, config keys, routes."""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from edge.admin import metrics, model
from edge.admin.settings import AdminConfig
from tests.admin.conftest import forwarder_state, source_state

README = (Path(__file__).resolve().parents[2] / "edge" / "admin" / "README.md").read_text()


def _full_metrics() -> set[str]:
    stats = {"depth_rows": 1, "depth_bytes": 1, "budget_bytes": 2, "oldest_age_s": 1.0, "runway_s": 5.0,
             "drain_eta_s": 3.0, "ingest_rate_10s": 1.0, "drain_rate_10s": 1.0, "wal_bytes": 1, "disk_free_bytes": 1}
    fwd = forwarder_state()
    s = model.status(appliance_id="a", stats=stats, states_by_kind={"forwarder": {"main": fwd},
                     "source": {"s": source_state("s")}}, samples=[], version="1", started=time.time())
    text = metrics.render(s, stats, fwd)
    names = set()
    for fam in text_string_to_metric_families(text):
        kind = fam.type
        names.add(fam.name + ("_total" if kind == "counter" else ""))
    return names


def test_every_metric_is_documented_and_every_documented_metric_exists():
    emitted = _full_metrics()
    documented = set()
    for m in re.finditer(r"`(zerobus_edge_[a-z_]+)`(?: / `(_[a-z_]+)`)?", README):
        documented.add(m.group(1))
        if m.group(2):
            documented.add("zerobus_edge" + m.group(2))
    assert emitted - documented == set(), "undocumented metrics"
    assert documented - emitted == set(), "documented metrics that do not exist"


def test_every_config_key_is_documented():
    for f in dataclasses.fields(AdminConfig):
        assert f"`{f.name}`" in README, f.name


def test_every_route_is_documented(app):
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<[^>]+>", "", rule.rule).rstrip("/")
        if rule.endpoint == "static" or not path:
            continue
        assert path in README, rule.rule
