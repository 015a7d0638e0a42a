"""Pure arithmetic and verdict of the air-gap drill (ops/drill.py does the I/O).

A drill owns the seq window [first_seq, last_seq]: from the first seq the spool
had not yet assigned when the cut began to the last one it had assigned when
the drain finished. The verdict: every seq of that window reached the sink, or
is covered by a loss marker the appliance wrote (then it is *explained* loss,
counted by cause); anything else is unexplained loss and fails the drill.
Duplicates are allowed (at-least-once) and counted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

Range = tuple[int, int]  # inclusive


def clip(ranges: list[Range], lo: int, hi: int) -> list[Range]:
    """The parts of inclusive ranges that fall inside [lo, hi]."""
    out = []
    for a, b in ranges:
        a2, b2 = max(a, lo), min(b, hi)
        if a2 <= b2:
            out.append((a2, b2))
    return out


def count(ranges: list[Range]) -> int:
    return sum(b - a + 1 for a, b in ranges)


def rate(samples: list[tuple[float, float]]) -> float | None:
    """Per-second slope between the first and last (t, value) samples; None with under two points."""
    if len(samples) < 2 or samples[-1][0] <= samples[0][0]:
        return None
    (t0, v0), (t1, v1) = samples[0], samples[-1]
    return (v1 - v0) / (t1 - t0)


def eta_s(depth: float, drain_rate: float | None, ingest_rate: float | None = 0.0) -> float | None:
    """Seconds until depth reaches 0 at the net drain rate; None when it is not shrinking."""
    net = (drain_rate or 0.0) - (ingest_rate or 0.0)
    if depth <= 0:
        return 0.0
    if net <= 0:
        return None
    return depth / net


@dataclass
class SinkView:
    """What a verifier saw at the sink for one appliance."""

    min_seq: int | None
    max_seq: int | None
    missing: list[Range]  # gaps between min_seq and max_seq
    unexplained: list[Range]  # gaps no loss marker covers
    duplicates: int  # rows received more than once (cumulative at the sink)
    rows: int


@dataclass
class Verdict:
    ok: bool
    first_seq: int
    last_seq: int
    window_seqs: int
    delivered_in_window: int
    explained_missing: int
    unexplained_missing: list[Range]
    tail_missing: Range | None  # seqs past what the sink has seen: not delivered
    duplicates_during_drill: int
    drained: bool
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def verdict(first_seq: int, last_seq: int, sink: SinkView, duplicates_before: int, drained: bool) -> Verdict:
    if last_seq < first_seq:  # nothing was collected during the drill
        last_seq = first_seq - 1
    reasons = []
    missing = clip(sink.missing, first_seq, last_seq)
    unexplained = clip(sink.unexplained, first_seq, last_seq)
    tail = None
    if last_seq >= first_seq and (sink.max_seq is None or sink.max_seq < last_seq):
        start = first_seq if sink.max_seq is None or sink.max_seq < first_seq else sink.max_seq + 1
        tail = (start, last_seq)
    head = None
    if sink.min_seq is not None and sink.min_seq > first_seq and last_seq >= first_seq:
        # The sink never saw the start of the window (its history began later).
        head = (first_seq, min(sink.min_seq - 1, last_seq))
    window = max(0, last_seq - first_seq + 1)
    lost = count(unexplained) + (count([tail]) if tail else 0) + (count([head]) if head else 0)
    delivered = window - count(missing) - (count([tail]) if tail else 0) - (count([head]) if head else 0)
    if not drained:
        reasons.append("the spool did not drain to 0 within the time allowed")
    if unexplained:
        reasons.append(f"{count(unexplained)} seq(s) missing at the sink with no loss marker: {unexplained[:10]}")
    if tail:
        reasons.append(f"seqs {tail[0]}..{tail[1]} never reached the sink")
    if head:
        reasons.append(f"seqs {head[0]}..{head[1]} are older than anything the sink holds")
    return Verdict(
        ok=drained and lost == 0,
        first_seq=first_seq,
        last_seq=last_seq,
        window_seqs=window,
        delivered_in_window=max(0, delivered),
        explained_missing=count(missing) - count(unexplained),
        unexplained_missing=unexplained,
        tail_missing=tail,
        duplicates_during_drill=max(0, sink.duplicates - duplicates_before),
        drained=drained,
        reasons=reasons,
    )


def _fmt_s(s: float | None) -> str:
    if s is None:
        return "-"
    if s >= 86400:
        return f"{s / 86400:.1f}d"
    if s >= 3600:
        return f"{s / 3600:.1f}h"
    if s >= 60:
        return f"{s / 60:.1f}m"
    return f"{s:.1f}s"


def sample_line(t: float, phase: str, st: dict) -> str:
    """One progress line from a spool stats dict (edge spool stats)."""
    return (f"t+{t:6.1f}s {phase:<7} depth {st.get('depth_seqs', '?'):>8} seqs "
            f"oldest {_fmt_s(st.get('oldest_age_s')):>7}  in {st.get('ingest_rate_10s') or 0:7.1f}/s  "
            f"out {st.get('drain_rate_10s') or 0:8.1f}/s  runway {_fmt_s(st.get('runway_s')):>7}  "
            f"eta {_fmt_s(st.get('drain_eta_s')):>7}")


def render(report: dict) -> str:
    """The human report of a finished drill."""
    v = report["verdict"]
    lines = [
        "",
        f"AIR-GAP DRILL {'PASSED' if v['ok'] else 'FAILED'}  appliance {report['appliance_id']}  verifier {report['verifier']}",
        f"  egress cut          {report['cut_s']:.0f}s (network {report['egress_network']})",
        f"  backlog at restore  {report['peak_depth']} seqs, oldest {_fmt_s(report['peak_oldest_age_s'])}, "
        f"runway then {_fmt_s(report['runway_at_restore_s'])}",
        f"  drain               {_fmt_s(report['drain_s'])} to depth 0, {report['drain_rate']:.0f} seqs/s average"
        if report.get("drain_s") is not None and report.get("drain_rate") is not None
        else "  drain               did not finish",
        f"  seq window          {v['first_seq']}..{v['last_seq']} ({v['window_seqs']} seqs)",
        f"  delivered           {v['delivered_in_window']}",
        f"  explained loss      {v['explained_missing']} (loss markers; by cause: {report.get('dropped_by_cause') or {}})",
        f"  unexplained loss    {count([tuple(r) for r in v['unexplained_missing']]) + (count([tuple(v['tail_missing'])]) if v['tail_missing'] else 0)}",
        f"  duplicates          {v['duplicates_during_drill']} (at-least-once; removed downstream by (appliance_id, seq))",
    ]
    for event in report.get("events", []):
        lines.append(f"  event               t+{event['t']:.1f}s {event['what']}")
    for r in v["reasons"]:
        lines.append(f"  !! {r}")
    return "\n".join(lines)
