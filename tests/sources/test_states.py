"""One state enum for every source, and the admin page knows how bad each one is."""

from __future__ import annotations

import ast
import time
from pathlib import Path

import pytest

from edge.admin import model
from edge.sources.states import SEVERITY, State
from edge.sources.status import SourceStatus

SOURCES = Path(__file__).resolve().parents[2] / "edge" / "sources"


def test_every_state_has_a_severity_and_the_admin_page_uses_it():
    missing = [s.value for s in State if s not in SEVERITY]
    assert missing == [], f"states without a severity: {missing}"
    assert set(SEVERITY.values()) <= {"ok", "warn", "bad", "idle"}
    for state, sev in SEVERITY.items():
        assert model.severity(state.value) == sev, state


@pytest.mark.parametrize("state", ["auth_failed", "tls_error", "connect_failed", "subscribe_failed"])
def test_a_refused_source_is_bad_and_the_headline_is_not_delivering(state):
    now = time.time()
    fwd = {"state": "streaming", "reason": "", "egress_cuts": [], "updated_ts": now, "since": now - 10}
    src = {"type": "mqtt", "state": state, "detail": "refused", "readings_total": 0, "updated_ts": now}
    s = model.status(appliance_id="a", stats={}, states_by_kind={"forwarder": {"main": fwd}, "source": {"m": src}},
                     samples=[], version="v", started=0.0)
    assert s["sources"][0]["severity"] == "bad"
    assert s["overall"]["headline"] != "Delivering" and "m" in s["overall"]["detail"]


def test_set_state_refuses_a_name_outside_the_enum():
    st = SourceStatus("x", "mqtt", None)
    st.set_state(State.AUTH_FAILED, "refused")
    st.set_state("connected")
    assert st.snapshot()["state"] == "connected" and st.state is State.CONNECTED
    with pytest.raises(ValueError, match="not a source state"):
        st.set_state("polling")


def test_every_state_a_collector_names_is_in_the_enum():
    """Every set_state call under edge/sources names a member: State.X, or a string that is one."""
    calls, names = 0, set()
    for path in SOURCES.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "set_state" and node.args):
                continue
            calls += 1
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names.add((arg.value, path.name))
            elif isinstance(arg, ast.Attribute) and isinstance(arg.value, ast.Name) and arg.value.id == "State":
                names.add((arg.attr.lower(), path.name))
    assert calls >= 10, "the scan found (almost) no set_state calls"
    unknown = sorted((n, p) for n, p in names if n not in {s.value for s in State})
    assert unknown == []


def test_a_full_disk_shows_as_disk_full_and_a_full_budget_as_blocked(tmp_path):
    """A source held back by the spool says why: the disk (an operator frees space) or the budget."""
    import asyncio

    from edge.sources.context import SourceContext, emit_with_backpressure
    from edge.writer import SpoolFull

    seen: list[str] = []
    refusals = [SpoolFull("disk_full", "database or disk is full"), SpoolFull("budget")]

    async def emit(items):
        if refusals:
            raise refusals.pop(0)
        return "committed"

    async def wait_for_space(timeout):
        seen.append(status.data["state"])
        return True

    status = SourceStatus("s", "synthetic", None)
    ctx = SourceContext(appliance_id="a", data_dir=tmp_path, emit=emit, submit=None, quarantine=None,
                        wait_for_space=wait_for_space, status=status)
    assert asyncio.run(emit_with_backpressure(ctx, [(1, b"x")], retry_every=0.01)) == "committed"
    assert seen == ["disk_full", "blocked"]
