"""Jinja filters: numbers, sizes, durations and times the way an operator reads them. Pure."""

from __future__ import annotations

import time


def num(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float) and not v.is_integer():
        return f"{v:,.1f}"
    return f"{int(v):,}"


def rate(v) -> str:
    if v is None:
        return "–"
    if v >= 100:
        return f"{v:,.0f}/s"
    return f"{v:,.1f}/s"


def size(v) -> str:
    if v is None:
        return "–"
    v = float(v)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(v) < 1024 or unit == "TiB":
            return f"{v:.0f} {unit}" if unit == "B" else f"{v:.1f} {unit}"
        v /= 1024
    return f"{v:.1f} TiB"  # pragma: no cover


def duration(v) -> str:
    """``3d 4h``, ``2h 14m``, ``5m 03s``, ``42s``, ``0.4s``."""
    if v is None:
        return "–"
    v = float(v)
    if v < 0:
        v = 0.0
    if v < 10:
        return f"{v:.1f}s"
    s = int(round(v))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d {h}h"
    if h:
        return f"{h}h {m:02d}m"
    if m:
        return f"{m}m {s:02d}s"
    return f"{s}s"


def clock(ts) -> str:
    if ts is None:
        return "–"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(ts))) + " UTC"


def short_clock(ts, now=None) -> str:
    """``03:48:55`` today (UTC), ``11-23 22:10`` before: tables on a phone need the short form."""
    if ts is None:
        return "–"
    now = time.time() if now is None else now
    t = time.gmtime(float(ts))
    if time.gmtime(now)[:3] == t[:3]:
        return time.strftime("%H:%M:%S", t)
    return time.strftime("%m-%d %H:%M", t)


def ago(ts, now=None) -> str:
    if ts is None:
        return "never"
    now = time.time() if now is None else now
    return f"{duration(max(0.0, now - float(ts)))} ago"


def pct(v) -> str:
    if v is None:
        return "–"
    return f"{v:.2f}%" if 0 < v < 1 else f"{v:.1f}%"


def label(v) -> str:
    return "–" if not v else str(v).replace("_", " ")


FILTERS = {"num": num, "rate": rate, "size": size, "duration": duration, "clock": clock, "ago": ago,
           "pct": pct, "label": label, "short_clock": short_clock}
