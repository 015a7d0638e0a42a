"""The page reads only what the producers write: no alias a producer never emits.

The keys the view model reads from each record are taken from ``model.py`` with ``ast``
and compared with what the real producers write: a real spool's ``stats()`` and
``samples()``, a real ``SourceStatus`` record, and the string constants of the
forwarder's code (its state record is a dict literal there).
"""

from __future__ import annotations

import ast
from pathlib import Path

from edge.admin import model
from edge.sources.states import SEVERITY as SOURCE_SEVERITY
from edge.sources.status import SourceStatus
from edge.spool import Spool

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "edge" / "admin" / "model.py"


def keys_read(functions: set[str], var: str, path: Path = MODEL) -> set[str]:
    """String keys read from ``var`` in ``functions``: ``_num(var, ...)``, ``_str(var, ...)``, ``var.get(k)``."""
    out = set()
    for fn in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(fn, ast.FunctionDef) and fn.name in functions):
            continue
        for n in ast.walk(fn):
            if (isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in ("_num", "_str")
                    and n.args and isinstance(n.args[0], ast.Name) and n.args[0].id == var):
                out |= {a.value for a in n.args[1:] if isinstance(a, ast.Constant)}
            elif (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "get"
                  and isinstance(n.func.value, ast.Name) and n.func.value.id == var
                  and n.args and isinstance(n.args[0], ast.Constant)):
                out.add(n.args[0].value)
    return out


def forwarder_words() -> set[str]:
    files = [ROOT / "edge" / "forwarder.py", *sorted((ROOT / "edge" / "forward").glob("*.py"))]
    return {n.value for f in files if f.exists() for n in ast.walk(ast.parse(f.read_text()))
            if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def test_spool_keys_are_the_spools(tmp_path):
    sp = Spool.open(tmp_path / "spool.db", appliance_id="a", max_bytes=1 << 20)
    try:
        stats = sp.stats()
        sp.sample()
        samples = sp.samples()
    finally:
        sp.close()
    read = keys_read({"backlog", "losses", "_dropped", "health", "_alarms", "status", "overall"}, "stats")
    assert read - set(stats) == set()
    assert set(model.SAMPLE_KEYS.values()) <= set(samples[0])


def test_source_keys_are_the_source_status_record():
    record = SourceStatus("s1", "mqtt", lambda *a: None).snapshot()
    # updated_ts: the spool's state table stamps every record it stores (edge/spool/queries.py).
    assert keys_read({"sources"}, "r") - set(record) - {"updated_ts"} == set()


def test_forwarder_keys_and_states_are_the_forwarders():
    words = forwarder_words()
    read = (keys_read({"uplink"}, "fwd") | keys_read({"_errors"}, "fwd") | keys_read({"_errors"}, "e")
            | keys_read({"drill_timeline"}, "cut"))
    assert read - words == set()
    assert set(model.FORWARDER_STATES) - {"disabled"} <= words
    for state in [*model.FORWARDER_STATES, "egress_down", "unknown", *(s.value for s in SOURCE_SEVERITY)]:
        assert state in model.SEVERITY, f"state {state!r} has no severity"
