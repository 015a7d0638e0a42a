"""What binds a drain, computed the same way by the benchmark (ops/bench_drain.py) and the drill (ops/drill.py).

The binding limit is the lowest of the limits known in the same run, in readings/s:

- ``link``: the link's rate at the bytes each reading took on the wire (measured there);
- ``quota``: streams x the per-stream quota;
- ``window``: the most the forwarder may keep in flight, in readings, over the ack round trip
  (``streams x max_inflight_batches x batch_max_records``, and ``max_inflight_bytes`` at the
  bytes per reading, whichever is fewer): the latency bound;
- ``no-limit``: the drain with no latency, quota or link (CPU, disk), when it was measured.

A limit that was not measured is left out, never guessed. Pure.
"""

from __future__ import annotations


def limits(*, streams: int, quota_per_stream: float | None = None, link_bps: float | None = None,
           wire_bytes_per_reading: float | None = None, window_records: int | None = None,
           window_bytes: int | None = None, bytes_per_reading: float | None = None, rtt_s: float | None = None,
           no_limit: float | None = None) -> dict[str, float]:
    out: dict[str, float] = {}
    if link_bps and wire_bytes_per_reading:
        out["link"] = link_bps / 8 / wire_bytes_per_reading
    if quota_per_stream:
        out["quota"] = streams * quota_per_stream
    in_flight = [w for w in (window_records, window_bytes / bytes_per_reading if window_bytes and bytes_per_reading
                             else None) if w]
    if in_flight and rtt_s:
        out["window"] = min(in_flight) / rtt_s
    if no_limit:
        out["no-limit"] = no_limit
    return out


def binding(known: dict[str, float]) -> tuple[str, float] | None:
    """The lowest known limit as (name, readings/s), or None when none was measured."""
    return min(known.items(), key=lambda kv: kv[1]) if known else None


def describe(known: dict[str, float]) -> str:
    """``min(link 17,256/s, quota 400,000/s, window 2,133,333/s) = link``."""
    if not known:
        return "no limit measured"
    parts = ", ".join(f"{k} {v:,.0f}/s" for k, v in sorted(known.items(), key=lambda kv: kv[1]))
    return f"min({parts}) = {binding(known)[0]}"


def figures(known: dict[str, float], drain_rate: float | None, said: dict[str, int] | None = None,
            min_rtt_ms: float | None = None) -> dict:
    """The drill's limit section: every known limit, which binds, the drain as a fraction of it."""
    out: dict = {"limits": {k: round(v, 1) for k, v in known.items()}, "drain_rate": drain_rate,
                 "min_rtt_ms": min_rtt_ms, "not_measured": [k for k in ("link", "quota", "window", "no-limit")
                                                            if k not in known]}
    if said:
        total = sum(said.values())
        out["forwarder_said"] = {k: round(v / total, 2) for k, v in sorted(said.items(), key=lambda kv: -kv[1])}
    bound = binding(known)
    if bound:
        out["binding"], out["binding_limit_rate"] = bound[0], round(bound[1], 1)
        out["binding_limit"] = describe(known)
        if drain_rate:
            out["fraction_of_limit"] = round(drain_rate / bound[1], 3)
    return out


def render(fig: dict, binding_lines: bool = True) -> list[str]:
    lines = []
    if binding_lines:
        lines.append(f"  binding limit       {fig.get('binding_limit') or 'none measured'}")
        if "fraction_of_limit" in fig:
            lines.append(f"  drain vs limit      {fig['drain_rate']:.0f} readings/s delivered = "
                         f"{fig['fraction_of_limit']:.2f} of the limit")
    if fig.get("not_measured"):
        lines.append(f"  not measured        {', '.join(fig['not_measured'])} (left out of the limit)")
    if fig.get("forwarder_said"):
        said = ", ".join(f"{k} {v:.0%}" for k, v in fig["forwarder_said"].items())
        rtt = f"; lowest ack RTT {fig['min_rtt_ms']:.0f} ms" if fig.get("min_rtt_ms") else ""
        lines.append(f"  forwarder said      {said}{rtt}")
    return lines
