"""A small, deterministic plant: the one process model every simulator serves.

Pure: no clock, no I/O, no global random state. ``Plant(lines=3, seed=1)``
builds production lines of machines; ``plant.step(t)`` returns every signal's
value at time ``t`` (seconds since the plant started) as ``{path: value}``.
The value at a given ``t`` depends only on the seed, the layout and the faults,
never on which ``t`` were asked before, so two simulators (Modbus, OPC-UA,
MQTT) built from the same seed agree, and a test can ask for the value it
expects at any time.

What the values do:

- analog signals (temperatures, pressures, flows, speeds, currents) follow a
  setpoint that makes a *step change* every ``step_period`` seconds (first-order
  approach, time constant ``tau``), plus a slow *drift* (long sines) and
  *noise* (a hash of seed, signal and millisecond, so it is repeatable);
- motor current follows motor speed; alarms trip when a temperature or
  pressure passes its high limit or a fault is active;
- counters count parts at a steady rate; valves open and close on schedule;
  each machine has a ``state`` string (RUNNING / IDLE / FAULT / OFFLINE).

Faults, scheduled with ``faults=[Fault(...)]`` / ``Plant.auto_faults(...)`` or
injected on demand with ``plant.inject(...)``:

- ``stuck``: the signal keeps the value it had when the fault began;
- ``out_of_range``: the signal reads far outside its sensor range
  (``hi + span``), as a broken 4-20 mA loop does;
- ``offline``: the machine (or the single signal) delivers nothing; its
  signals read ``None`` and ``plant.offline(t)`` names it. A simulator maps
  that to "no response" on its protocol.

A fault's ``target`` is a machine path (``line1/press2``: every signal of it)
or a signal path (``line1/press2/temperature``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

FAULT_KINDS = ("stuck", "out_of_range", "offline")
STATES = ("RUNNING", "IDLE", "FAULT", "OFFLINE")

# (name, unit, data_type, lo, hi, nominal, high_limit or None)
# data_type is one of "float", "int", "bool", "string"; lo..hi is the sensor range.
_MACHINE_KINDS: dict[str, list[tuple[str, str, str, float, float, float, float | None]]] = {
    "press": [
        ("temperature", "degC", "float", 0.0, 200.0, 65.0, 90.0),
        ("pressure", "bar", "float", 0.0, 400.0, 180.0, 300.0),
        ("motor_speed", "rpm", "float", 0.0, 3000.0, 1450.0, None),
        ("motor_current", "A", "float", 0.0, 100.0, 0.0, None),  # derived from motor_speed
        ("parts", "count", "int", 0, 2**31 - 1, 0.5, None),  # nominal = parts per second
        ("alarm", "", "bool", 0, 1, 0, None),
        ("state", "", "string", 0, 0, 0, None),
    ],
    "pump": [
        ("flow", "m3/h", "float", 0.0, 250.0, 120.0, None),
        ("pressure", "bar", "float", 0.0, 16.0, 6.0, 12.0),
        ("motor_speed", "rpm", "float", 0.0, 3600.0, 2900.0, None),
        ("motor_current", "A", "float", 0.0, 60.0, 0.0, None),
        ("valve_open", "", "bool", 0, 1, 0, None),
        ("run_seconds", "s", "int", 0, 2**31 - 1, 1.0, None),
        ("alarm", "", "bool", 0, 1, 0, None),
        ("state", "", "string", 0, 0, 0, None),
    ],
    "oven": [
        ("temperature", "degC", "float", 0.0, 400.0, 220.0, 260.0),
        ("setpoint", "degC", "float", 0.0, 400.0, 220.0, None),
        ("gas_valve_open", "", "bool", 0, 1, 0, None),
        ("alarm", "", "bool", 0, 1, 0, None),
        ("state", "", "string", 0, 0, 0, None),
    ],
}

DEFAULT_LAYOUT = ("press", "press", "pump", "oven")


@dataclass(frozen=True)
class Signal:
    path: str  # "line1/press2/temperature"
    line: str  # "line1"
    machine: str  # "line1/press2"
    name: str  # "temperature"
    unit: str
    data_type: str  # float | int | bool | string
    lo: float  # sensor range
    hi: float
    index: int  # position in Plant.signals


@dataclass(frozen=True)
class Fault:
    target: str  # machine path or signal path
    kind: str  # one of FAULT_KINDS
    start: float  # seconds
    end: float | None = None  # None: until cleared

    def active(self, t: float) -> bool:
        return self.start <= t and (self.end is None or t < self.end)

    def covers(self, sig: Signal) -> bool:
        return self.target in (sig.path, sig.machine)


@dataclass
class _Params:  # per-signal constants drawn once from the seed
    base: float
    step_span: float
    drift_amp: float
    drift_period: float
    noise: float
    high_limit: float | None


_M64 = (1 << 64) - 1


def _mix(*parts: int) -> int:
    """splitmix64 over the parts: a fast, stable hash (Python's hash() is salted per process)."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (p & _M64)) & _M64
        h = (h + 0x9E3779B97F4A7C15) & _M64
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _M64
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _M64
        h ^= h >> 31
    return h


def _unit(*parts: int) -> float:
    """Deterministic uniform in [0, 1)."""
    return (_mix(*parts) >> 11) / float(1 << 53)


def _gauss(*parts: int) -> float:
    """Deterministic standard normal (Box-Muller on two hashed uniforms)."""
    u1 = max(_unit(*parts, 1), 1e-12)
    u2 = _unit(*parts, 2)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2 * math.pi * u2)


class Plant:
    """``Plant(lines=3, seed=1)``: ``signals``, ``machines``, ``step(t)``, ``inject``, ``clear``, ``offline``."""

    def __init__(
        self,
        lines: int = 3,
        seed: int = 0,
        layout: Iterable[str] = DEFAULT_LAYOUT,
        faults: Iterable[Fault] = (),
        step_period: float = 300.0,
        tau: float = 20.0,
    ):
        if lines < 1:
            raise ValueError("lines must be >= 1")
        layout = tuple(layout)
        for kind in layout:
            if kind not in _MACHINE_KINDS:
                raise ValueError(f"unknown machine kind {kind!r} (known: {', '.join(_MACHINE_KINDS)})")
        self.seed = int(seed)
        self.step_period = float(step_period)
        self.tau = float(tau)
        self.signals: list[Signal] = []
        self.machines: list[str] = []
        self._params: list[_Params] = []
        self._by_path: dict[str, Signal] = {}
        self._machine_signals: dict[str, dict[str, Signal]] = {}
        for ln in range(1, lines + 1):
            seen: dict[str, int] = {}
            for kind in layout:
                seen[kind] = seen.get(kind, 0) + 1
                machine = f"line{ln}/{kind}{seen[kind]}"
                self.machines.append(machine)
                self._machine_signals[machine] = {}
                for name, unit, dtype, lo, hi, nominal, limit in _MACHINE_KINDS[kind]:
                    sig = Signal(f"{machine}/{name}", f"line{ln}", machine, name, unit, dtype, lo, hi, len(self.signals))
                    self.signals.append(sig)
                    self._by_path[sig.path] = sig
                    self._machine_signals[machine][name] = sig
                    self._params.append(self._draw(sig, nominal, limit))
        self._faults: list[Fault] = []
        for f in faults:
            self._add(f)

    def _draw(self, sig: Signal, nominal: float, limit: float | None) -> _Params:
        s, i = self.seed, sig.index
        span = sig.hi - sig.lo
        return _Params(
            base=nominal * (0.9 + 0.2 * _unit(s, i, 10)) if sig.data_type == "float" else nominal,
            step_span=0.08 * span,
            drift_amp=0.02 * span * _unit(s, i, 11),
            drift_period=600.0 + 3000.0 * _unit(s, i, 12),
            noise=0.002 * span,
            high_limit=limit,
        )

    # ---- lookup -------------------------------------------------------------------------

    def signal(self, path: str) -> Signal:
        try:
            return self._by_path[path]
        except KeyError:
            raise KeyError(f"no signal {path!r} in this plant") from None

    def signals_of(self, machine: str) -> list[Signal]:
        return list(self._machine_signals[machine].values())

    # ---- faults -------------------------------------------------------------------------

    def _add(self, f: Fault) -> Fault:
        if f.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {f.kind!r} (known: {', '.join(FAULT_KINDS)})")
        if f.target not in self._by_path and f.target not in self._machine_signals:
            raise ValueError(f"fault target {f.target!r} is neither a machine nor a signal of this plant")
        if f.end is not None and f.end <= f.start:
            raise ValueError("fault end must be after its start")
        self._faults.append(f)
        return f

    def inject(self, target: str, kind: str, start: float, end: float | None = None) -> Fault:
        """Add a fault from ``start`` (until ``end``, or until cleared)."""
        return self._add(Fault(target, kind, float(start), None if end is None else float(end)))

    def clear(self, at: float, target: str | None = None) -> None:
        """End open or still-running faults (of ``target``, or all) at time ``at``."""
        out = []
        for f in self._faults:
            if (target is None or f.target == target) and f.active(at):
                if f.start >= at:
                    continue  # never started: drop it
                f = Fault(f.target, f.kind, f.start, at)
            out.append(f)
        self._faults = out

    @property
    def faults(self) -> list[Fault]:
        return list(self._faults)

    def faults_at(self, t: float) -> list[Fault]:
        return [f for f in self._faults if f.active(t)]

    def offline(self, t: float) -> set[str]:
        """Machines (or single signals) that deliver nothing at ``t``."""
        return {f.target for f in self._faults if f.kind == "offline" and f.active(t)}

    def auto_faults(self, horizon: float, every: float = 600.0, duration: float = 60.0) -> list[Fault]:
        """Schedule one seeded random fault per ``every`` seconds up to ``horizon``; returns them."""
        added = []
        k = 0
        while (k + 1) * every <= horizon:
            start = k * every + (every - duration) * _unit(self.seed, k, 99)
            kind = FAULT_KINDS[_mix(self.seed, k, 98) % len(FAULT_KINDS)]
            if kind == "offline":
                target = self.machines[_mix(self.seed, k, 97) % len(self.machines)]
            else:
                analog = [s for s in self.signals if s.data_type == "float"]
                target = analog[_mix(self.seed, k, 96) % len(analog)].path
            added.append(self._add(Fault(target, kind, start, start + duration)))
            k += 1
        return added

    # ---- values -------------------------------------------------------------------------

    def step(self, t: float) -> dict[str, object]:
        """Every signal's value at ``t`` seconds: ``{path: value}``, ``None`` where offline."""
        return {sig.path: self.value(sig.path, t) for sig in self.signals}

    def value(self, path: str, t: float) -> object:
        sig = self.signal(path)
        fault = None
        for f in self._faults:
            if f.active(t) and f.covers(sig):
                if f.kind == "offline":
                    return None
                fault = fault or f
        if fault is not None and fault.kind == "stuck":
            return self._clean(sig, fault.start)
        if fault is not None and fault.kind == "out_of_range" and sig.data_type in ("float", "int"):
            v = sig.hi + (sig.hi - sig.lo)
            return float(v) if sig.data_type == "float" else int(v)
        return self._clean(sig, t)

    def _clean(self, sig: Signal, t: float) -> object:
        p = self._params[sig.index]
        name, machine = sig.name, sig.machine
        if sig.data_type == "float":
            if name == "motor_current":
                speed_sig = self._machine_signals[machine]["motor_speed"]
                speed = self._analog(speed_sig, t)
                return round(sig.hi * 0.1 + 0.7 * sig.hi * speed / speed_sig.hi + self._noise(sig, t), 4)
            if name == "setpoint":
                return round(self._target(sig, t), 4)
            if name == "temperature" and "setpoint" in self._machine_signals[machine]:
                sp = self._machine_signals[machine]["setpoint"]
                return round(self._approach(sp, t) + self._noise(sig, t), 4)
            return round(self._analog(sig, t), 4)
        if sig.data_type == "int":
            return int(max(t, 0.0) * p.base)
        if sig.data_type == "bool":
            if name == "alarm":
                return self._alarm(machine, t)
            # valves: open for a seeded share of each 90 s cycle
            phase = (t + 90.0 * _unit(self.seed, sig.index, 20)) % 90.0
            return phase < 90.0 * (0.3 + 0.4 * _unit(self.seed, sig.index, 21))
        if sig.data_type == "string":
            return self._state(machine, t)
        raise AssertionError(sig.data_type)

    def _target(self, sig: Signal, t: float, segment: int | None = None) -> float:
        p = self._params[sig.index]
        k = int(math.floor(t / self.step_period)) if segment is None else segment
        level = p.base + p.step_span * (2 * _unit(self.seed, sig.index, k, 30) - 1)
        return min(max(level, sig.lo), sig.hi)

    def _approach(self, sig: Signal, t: float) -> float:
        """First-order approach from the previous setpoint to the current one after each step change."""
        k = int(math.floor(t / self.step_period))
        into = t - k * self.step_period
        prev, cur = self._target(sig, t, k - 1), self._target(sig, t, k)
        return cur + (prev - cur) * math.exp(-into / self.tau)

    def _noise(self, sig: Signal, t: float) -> float:
        return self._params[sig.index].noise * _gauss(self.seed, sig.index, int(round(t * 1000)))

    def _analog(self, sig: Signal, t: float) -> float:
        p = self._params[sig.index]
        drift = p.drift_amp * math.sin(2 * math.pi * t / p.drift_period + sig.index)
        v = self._approach(sig, t) + drift + self._noise(sig, t)
        return min(max(v, sig.lo), sig.hi)

    def _alarm(self, machine: str, t: float) -> bool:
        for sig in self._machine_signals[machine].values():
            if any(f.active(t) and f.covers(sig) and f.kind != "offline" for f in self._faults):
                return True
            limit = self._params[sig.index].high_limit
            if limit is not None and sig.data_type == "float":
                if self._analog(sig, t) > limit:
                    return True
        return False

    def _state(self, machine: str, t: float) -> str:
        if any(f.kind == "offline" and f.active(t) and f.target == machine for f in self._faults):
            return "OFFLINE"  # only seen by a signal-level reader; the machine itself reads None
        if self._alarm(machine, t):
            return "FAULT"
        # idle for a seeded minute now and then
        k = int(t // 240.0)
        return "IDLE" if _unit(self.seed, _mix(*map(ord, machine)), k, 40) < 0.15 and (t % 240.0) < 60.0 else "RUNNING"


__all__ = ["DEFAULT_LAYOUT", "FAULT_KINDS", "Fault", "Plant", "STATES", "Signal"]
