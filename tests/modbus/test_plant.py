"""The shared plant model: deterministic, plausible, faults behave as documented."""

import math

import pytest

from simulators.plant import FAULT_KINDS, Fault, Plant


def test_layout_and_signal_metadata():
    p = Plant(lines=3, seed=1)
    assert p.machines[:4] == ["line1/press1", "line1/press2", "line1/pump1", "line1/oven1"]
    assert len(p.machines) == 12
    paths = [s.path for s in p.signals]
    assert len(paths) == len(set(paths))
    sig = p.signal("line2/press2/temperature")
    assert (sig.line, sig.machine, sig.unit, sig.data_type) == ("line2", "line2/press2", "degC", "float")
    assert {s.data_type for s in p.signals} == {"float", "int", "bool", "string"}
    with pytest.raises(KeyError):
        p.signal("line9/press1/temperature")


def test_deterministic_and_independent_of_call_order():
    a, b = Plant(lines=2, seed=7), Plant(lines=2, seed=7)
    forward = [a.step(t) for t in (0.0, 1.5, 300.0, 1234.5)]
    backward = [b.step(t) for t in (1234.5, 300.0, 1.5, 0.0)][::-1]
    assert forward == backward
    assert Plant(lines=2, seed=8).step(1.5) != forward[1]


def test_values_are_plausible_and_types_match():
    p = Plant(lines=3, seed=3)
    for t in (0.0, 10.0, 299.9, 300.0, 5000.0):
        for path, v in p.step(t).items():
            sig = p.signal(path)
            expected = {"float": float, "int": int, "bool": bool, "string": str}[sig.data_type]
            assert type(v) is expected, path
            if sig.data_type in ("float", "int"):
                assert sig.lo <= v <= sig.hi, (path, v)
    # noise: consecutive samples differ; drift/noise stay small relative to the range
    s = p.signal("line1/pump1/flow")
    vals = [p.value(s.path, 10 + i * 0.1) for i in range(50)]
    assert len(set(vals)) > 40
    assert max(vals) - min(vals) < 0.1 * (s.hi - s.lo)


def test_step_change_is_approached_first_order():
    p = Plant(lines=1, seed=5, step_period=100.0, tau=5.0)
    sp = "line1/oven1/setpoint"
    before, after = p.value(sp, 99.0), p.value(sp, 101.0)
    assert before != after  # setpoint steps at the period boundary
    temp = "line1/oven1/temperature"
    # shortly after the step the temperature is still near the old setpoint; later near the new one
    assert abs(after - before) > 1
    assert abs(p.value(temp, 100.5) - before) < abs(p.value(temp, 100.5) - after)
    assert abs(p.value(temp, 160.0) - after) < 2.0


def test_counters_monotonic_and_current_follows_speed():
    p = Plant(lines=1, seed=2)
    counts = [p.value("line1/press1/parts", t) for t in range(0, 100, 7)]
    assert counts == sorted(counts) and counts[-1] > counts[0]
    spd = p.signal("line1/press1/motor_speed")
    cur = p.value("line1/press1/motor_current", 50.0)
    expected = 100 * 0.1 + 0.7 * 100 * p.value(spd.path, 50.0) / spd.hi
    assert math.isclose(cur, expected, abs_tol=1.5)


def test_faults_stuck_out_of_range_offline():
    p = Plant(lines=1, seed=4)
    path = "line1/press1/pressure"
    p.inject(path, "stuck", start=10.0, end=20.0)
    assert p.value(path, 12.0) == p.value(path, 18.0) == p.value(path, 10.0)
    assert p.value(path, 25.0) != p.value(path, 26.0)
    assert p.value("line1/press1/alarm", 15.0) is True

    p.inject("line1/pump1/flow", "out_of_range", start=30.0)
    assert p.value("line1/pump1/flow", 31.0) == 500.0  # hi + span
    p.clear(at=40.0, target="line1/pump1/flow")
    assert p.value("line1/pump1/flow", 41.0) < 250.0

    p.inject("line1/oven1", "offline", start=50.0, end=60.0)
    vals = p.step(55.0)
    assert all(vals[s.path] is None for s in p.signals_of("line1/oven1"))
    assert vals["line1/press1/temperature"] is not None
    assert p.offline(55.0) == {"line1/oven1"} and p.offline(60.0) == set()


def test_fault_validation_and_auto_schedule():
    p = Plant(lines=2, seed=9)
    with pytest.raises(ValueError, match="neither a machine nor a signal"):
        p.inject("line7/press1", "offline", 0)
    with pytest.raises(ValueError, match="unknown fault kind"):
        p.inject("line1/press1", "melted", 0)
    with pytest.raises(ValueError, match="end must be after"):
        Plant(lines=1, faults=[Fault("line1/press1", "stuck", 5, 5)])
    added = p.auto_faults(horizon=3600, every=600, duration=60)
    assert len(added) == 6 and {f.kind for f in added} <= set(FAULT_KINDS)
    assert all(k * 600 <= f.start and f.end <= (k + 1) * 600 for k, f in enumerate(added))
    assert [f.target for f in Plant(lines=2, seed=9).auto_faults(3600)] == [f.target for f in added]
