"""What should have landed in the spool for a foreign server's value, and what did not match.

A reading is matched to the server's tick by its SourceTimestamp (the tick log of
simulators/foreign/process.py), and compared with simulators/foreign/values.py's value for that
tick, mapped as edge/sources/opcua/README.md "What a reading looks like" documents it.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any, Iterable

from simulators.foreign.values import EU_DISPLAY, TYPES, float32, value

INT64 = range(-(1 << 63), 1 << 63)


def shortest_float32(x: float) -> float:
    """The shortest decimal that reads back as the same float32 (0.6 for float32(0.6))."""
    for digits in range(1, 10):
        s = float(f"{x:.{digits}g}")
        if float32(s) == x:
            return s
    return x


def expected(type_name: str, k: int) -> tuple[str, Any]:
    """(Reading field, its value) for variable ``type_name`` at tick ``k``."""
    v = value(type_name, k)
    if type_name == "Boolean":
        return "value_bool", v
    if type_name == "Float":
        return "value_double", shortest_float32(v)
    if type_name == "Double":
        return "value_double", v
    if type_name == "String":
        return "value_string", v
    if type_name == "DateTime":
        return "value_string", v.isoformat(timespec="microseconds").replace("+00:00", "Z")
    return ("value_int", v) if v in INT64 else ("value_json", json.dumps(v))


def every_type_has(readings: Iterable[Any], n: int) -> bool:
    """At least ``n`` value readings of every type's variable."""
    c = Counter(type_of(r.point) for r in readings if r.kind == "reading")
    return all(c[t] >= n for t in TYPES)


def duplicated(readings: Iterable[Any]) -> list[tuple[str, int]]:
    """(point, source time) of value readings that landed more than once."""
    c = Counter((r.point, r.source_ts) for r in readings if r.kind == "reading")
    return [k for k, n in c.items() if n > 1]


def type_of(point: str) -> str | None:
    name = point.rsplit("/", 1)[-1]
    return name if name in TYPES else None


def mismatches(readings: Iterable[Any], ticks: dict[int, int]) -> list[tuple]:
    """Every value reading whose source time is no tick of the server, or whose value/type is not the tick's."""
    bad = []
    for r in readings:
        t = type_of(r.point)
        if r.kind != "reading" or t is None:
            continue
        k = ticks.get(r.source_ts)
        if k is None:
            bad.append((r.point, "source_ts not set by the server", r.source_ts))
            continue
        field, want = expected(t, k)
        got = getattr(r, field) if r.HasField(field) else None
        if got != want or r.data_type != t or r.quality != "GOOD":
            bad.append((r.point, k, field, got, want, r.data_type, r.quality))
    return bad


def landed(readings: Iterable[Any], ticks: dict[int, int]) -> dict[str, list[int]]:
    """{type name: [source time (us) of every value reading set by the server, in spool order]}."""
    out: dict[str, list[int]] = defaultdict(list)
    for r in readings:
        t = type_of(r.point)
        if r.kind == "reading" and t is not None and r.source_ts in ticks:
            out[t].append(r.source_ts)
    return out


def holes(times: list[int], ticks: dict[int, int]) -> list[int]:
    """Source times the server set between the first and the last of ``times`` that never landed."""
    got = set(times)
    return [t for t in sorted(ticks) if min(times) < t < max(times) and t not in got]


def problems(readings: list[Any], ticks: dict[int, int]) -> dict[str, Any]:
    """Wrong values/types/source times, and ticks lost between a point's first and last value."""
    got = landed(readings, ticks)
    lost = {t: holes(got[t], ticks) for t in TYPES}
    return {"mismatches": mismatches(readings, ticks), "lost": {t: h for t, h in lost.items() if h}}


def subscription_problems(stats: dict[str, Any], readings: list[Any], ticks: dict[int, int]) -> list[str]:
    """What went wrong in a run that subscribed every type of the foreign server (``[]``: nothing).

    Every variable subscribed and none failed; every Publish response decoded by fastpublish.py
    itself; the value, Variant type and quality of each tick the server set, none lost
    (sampling 0: every write); the EngineeringUnits property on Double, none on Int32.
    """
    out = []
    if stats["subscribed"] != len(TYPES) or stats["failed"] != 0:
        out.append(f"subscribed {stats['subscribed']} of {len(TYPES)}, failed {stats['failed']}")
    if stats["publish_fallbacks"] != 0:
        out.append(f"{stats['publish_fallbacks']} publish responses fell back to asyncua's decoder")
    found = problems(readings, ticks)
    if found != {"mismatches": [], "lost": {}}:
        out.append(f"values: {found}")
    units = {r.point: r.unit for r in readings if r.kind == "reading"}
    if units.get("Plant/Double") != EU_DISPLAY or units.get("Plant/Int32") != "":
        out.append(f"units: Double {units.get('Plant/Double')!r}, Int32 {units.get('Plant/Int32')!r}")
    return out
