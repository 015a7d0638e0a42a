"""``/metrics`` in the Prometheus text exposition format (0.0.4), from the same view model as the page.

Pure. Metric names are part of the product's interface: they are listed in
``edge/admin/README.md`` and must not be renamed. Values the spool does not
know (yet) are left out rather than reported as 0, except counters, which
start at 0.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

PREFIX = "zerobus_edge_"
# Seconds; used when the forwarder does not report its own buckets.
DEFAULT_ACK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
DRAIN_BINDINGS = ("measuring", "latency-bound", "quota-bound", "link-bound", "queue-bound", "cpu-bound", "caught-up")
DRAIN_FIGURES = (
    ("rtt_ms", "drain_ack_rtt_milliseconds", "Smoothed time from send to ack of recent batches."),
    ("records_per_s", "drain_records_per_second", "Records per second acked over the last interval of the drain."),
    ("bytes_per_s", "drain_bytes_per_second", "Record bytes per second acked over the last interval of the drain."),
    ("window_bytes", "drain_window_bytes", "Bytes the forwarder allows in flight now (rate x RTT, bounded)."),
    ("streams_open", "drain_streams_open", "ZeroBus streams open now."),
)
FORWARDER_STATES = ("streaming", "idle", "connecting", "backing_off", "blocked", "egress_down", "paused", "starting",
                    "stopped", "disabled", "unknown")


SOURCE_FAMILIES = (
    ("source_readings_total", "counter", "Readings a source handed to the spool since it started.",
     lambda s: s["readings_total"]),
    ("source_errors_total", "counter", "Errors a source reported since it started.", lambda s: s["errors_total"]),
    ("source_quarantined_total", "counter", "Payloads a source quarantined since it started.",
     lambda s: s["quarantined_total"]),
    ("source_up", "gauge", "1 when the source's connection state is healthy.",
     lambda s: 1 if s["severity"] == "ok" else 0),
    ("source_devices_offline", "gauge", "Devices of a source currently offline.", lambda s: len(s["devices_offline"])),
    ("source_last_reading_timestamp_seconds", "gauge", "Unix time of the source's last reading.",
     lambda s: s["last_reading_ts"]),
    ("source_gaps_open", "gauge", "Intervals whose values the source lost (no history to back-fill them), since it started.",
     lambda s: s["gaps_open"]),
    ("source_gap_seconds", "gauge", "Seconds of source time those lost intervals cover, summed over points.",
     lambda s: s["gap_seconds"]),
)


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt(v: float) -> str:
    if isinstance(v, bool):
        v = int(v)
    if isinstance(v, int):
        return str(v)
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if math.isnan(v):
        return "NaN"
    return repr(float(v))


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_: str, samples: Iterable[tuple[dict, Any]], suffix: str = "") -> None:
        rows = [(labels, v) for labels, v in samples if v is not None]
        if not rows and kind != "counter":
            return
        full = PREFIX + name
        self.lines.append(f"# HELP {full} {help_}")
        self.lines.append(f"# TYPE {full} {kind}")
        for labels, v in rows:
            lab = ",".join(f'{k}="{_esc(str(val))}"' for k, val in labels.items())
            self.lines.append(f"{full}{suffix}{{{lab}}} {_fmt(v)}" if lab else f"{full}{suffix} {_fmt(v)}")

    def one(self, name: str, kind: str, help_: str, value: Any) -> None:
        self.family(name, kind, help_, [({}, value)])


def _hist(w: _Writer, name: str, help_: str, fwd: Mapping[str, Any]) -> None:
    """From the forwarder record: ``ack_latency_buckets`` = [[bound, cumulative], ..., ["+Inf", total]]."""
    bounds, counts = list(DEFAULT_ACK_BUCKETS), [0] * len(DEFAULT_ACK_BUCKETS)
    n, total = 0, 0.0
    raw = fwd.get("ack_latency_buckets")
    if isinstance(raw, list) and raw and all(isinstance(x, (list, tuple)) and len(x) == 2 for x in raw):
        finite = [(b, c) for b, c in raw if isinstance(b, (int, float)) and isinstance(c, int)]
        bounds, counts = [float(b) for b, _ in finite], [c for _, c in finite]
        inf = [c for b, c in raw if b == "+Inf" and isinstance(c, int)]
        n = inf[0] if inf else (counts[-1] if counts else 0)
        total = float(fwd.get("ack_latency_sum") or 0.0)
    n = max([n] + counts)
    full = PREFIX + name
    w.lines.append(f"# HELP {full} {help_}")
    w.lines.append(f"# TYPE {full} histogram")
    for b, c in zip(bounds, counts):
        w.lines.append(f'{full}_bucket{{le="{_fmt(float(b))}"}} {c}')
    w.lines.append(f'{full}_bucket{{le="+Inf"}} {n}')
    w.lines.append(f"{full}_sum {_fmt(total)}")
    w.lines.append(f"{full}_count {n}")


def render(status: Mapping[str, Any], stats: Mapping[str, Any], forwarder: Mapping[str, Any] | None) -> str:
    """``stats``: the spool's stats dict (for its monotonic totals); ``forwarder``: its raw state record."""
    w = _Writer()
    fwd = forwarder or {}
    bl, up, lo, he = status["backlog"], status["uplink"], status["losses"], status["health"]
    srcs = status["sources"]
    w.family("build_info", "gauge", "Version of the admin process; always 1.",
             [({"version": he["version"], "appliance_id": status["appliance_id"]}, 1)])
    w.one("spool_readable", "gauge", "1 when the admin process could read the spool on this scrape.",
          1 if he["spool_readable"] else 0)
    w.one("readings_received_total", "counter",
          "Readings collectors handed to the spool (sum of per-source counters since each source started).",
          sum(s["readings_total"] for s in srcs))
    w.one("readings_spooled_total", "counter", "Readings committed to the spool (seqs assigned).",
          stats.get("appended_total") or 0)
    w.one("readings_forwarded_total", "counter", "Readings acknowledged by ZeroBus and removed from the spool.",
          stats.get("delivered_total") or 0)
    causes = dict(lo["dropped"])
    for cause in ("drop_oldest", "drop_newest", "expired"):
        causes.setdefault(cause, 0)
    w.family("readings_dropped_total", "counter", "Readings dropped by the spool, by cause (budget policy, expiry).",
             [({"cause": c}, v) for c, v in sorted(causes.items())])
    w.one("loss_markers_total", "counter", "Loss markers written for dropped or dead-lettered ranges.",
          lo["loss_markers"])
    w.one("readings_dead_lettered_total", "counter", "Records ZeroBus rejected, moved to the dead-letter table.",
          lo["dead_letters"])
    w.one("payloads_quarantined_total", "counter", "Source payloads that could not become readings, quarantined.",
          lo["quarantined"])
    w.one("spool_depth_readings", "gauge", "Undelivered records in the spool.", bl["depth_rows"])
    w.one("spool_bytes", "gauge", "Bytes charged against the spool budget.", bl["depth_bytes"])
    w.one("spool_budget_bytes", "gauge", "The spool budget in bytes.", bl["budget_bytes"])
    w.one("spool_oldest_age_seconds", "gauge", "Age of the oldest undelivered reading.", bl["oldest_age_s"])
    w.one("spool_runway_seconds", "gauge", "Time until the budget is full at the current net ingest rate.",
          bl["runway_s"])
    w.one("spool_drain_eta_seconds", "gauge", "Estimated time to drain the backlog at the current net drain rate.",
          bl["drain_eta_s"])
    w.one("ingest_rate", "gauge", "Readings per second entering the spool (recent average).", bl["ingest_rate"])
    w.one("drain_rate", "gauge", "Readings per second acknowledged by ZeroBus (recent average).", bl["drain_rate"])
    w.one("spool_wal_bytes", "gauge", "Size of the SQLite write-ahead log.", he["wal_bytes"])
    w.one("disk_free_bytes", "gauge", "Free bytes on the spool's filesystem.", he["disk_free_bytes"])
    w.one("spool_alarms", "gauge", "Active spool alarms.", len(he["alarms"]))
    states = list(FORWARDER_STATES)
    if up["state"] not in states:
        states.append(up["state"])
    w.family("forwarder_state", "gauge", "1 for the forwarder's current state, 0 for the others.",
             [({"state": s}, 1 if s == up["state"] else 0) for s in states])
    w.one("forwarder_state_age_seconds", "gauge", "Seconds since the forwarder last wrote its state.",
          up["state_age_s"])
    w.one("forwarder_last_ack_timestamp_seconds", "gauge", "Unix time of the last ZeroBus acknowledgement.",
          up["last_ack_ts"])
    w.one("forwarder_last_ack_seq", "gauge", "Highest seq acknowledged by ZeroBus.", up["last_ack_seq"])
    w.one("forwarder_errors", "gauge", "Recent forwarder errors kept in its state record.", len(up["errors"]))
    w.one("egress_cuts_total", "counter", "Egress cuts the forwarder detected since it started.",
          fwd.get("egress_cuts_total") or 0)
    w.one("forwarder_failures_total", "counter", "Failed sessions (stream errors, timeouts) since the forwarder started.",
          fwd.get("failures_total") or 0)
    w.one("forwarder_resent_total", "counter", "Readings sent again after a failure (not losses, not new data).",
          fwd.get("resent_total") or 0)
    _hist(w, "ack_latency_seconds", "Time from sending a batch to its ZeroBus acknowledgement.", fwd)
    drain = fwd.get("drain") if isinstance(fwd.get("drain"), Mapping) else {}
    w.family("drain_binding", "gauge", "1 for what binds the drain now, 0 for the others.",
             [({"binding": b}, 1 if b == drain.get("binding") else 0) for b in DRAIN_BINDINGS] if drain else [])
    for key, name, help_ in DRAIN_FIGURES:
        w.one(name, "gauge", help_, drain.get(key))
    for name, kind, help_, value in SOURCE_FAMILIES:
        w.family(name, kind, help_, [({"source": x["name"], "type": x["type"]}, value(x)) for x in srcs])
    return "\n".join(w.lines) + "\n"
