"""``edge doctor --sources``: every configured source's probe, bounded, concurrent, scrubbed, printed.

Each source type may ship ``edge/sources/<type>/probe.py`` with ``async def probe(cfg, timeout,
*, appliance_id, data_dir) -> list[Check]``. The sources are probed at once; each probe is
bounded by ``STEPS`` x ``timeout`` on top of its own per-step bounds, so a server that hangs
shows as one FAIL row instead of hanging the doctor. Every row's text is scrubbed of the
config's secrets before anyone sees it. The same run serves the CLI and the admin page's
request (``run_source_checks``), which stores the rows with ``sourcereport.record``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import json
from dataclasses import asdict
from typing import Any, Callable, Iterable

from edge.configtypes import Secret
from edge.control import sourcereport
from edge.control.probing import FAIL, PASS, SKIP, Check
from edge.redact import Scrubber

STEPS = 8  # a probe's whole run is bounded by this many per-step timeouts


def secrets_of(cfg: Any) -> list[str]:
    """Every secret the config holds (the sources' and the cloud's), for the scrubber."""
    out = [str(cfg.zerobus.client_secret)]
    for src in cfg.sources:
        out += [str(v) for f in dataclasses.fields(src) if isinstance(v := getattr(src, f.name), Secret)]
    return [s for s in out if s]


def _probe_of(src_type: str):
    from edge.config import SOURCE_TYPES

    try:
        module = importlib.import_module(f"{SOURCE_TYPES[src_type]}.probe")
    except ModuleNotFoundError:
        return None
    return getattr(module, "probe", None)


async def check_source(src: Any, cfg: Any, timeout: float) -> list[Check]:
    """One source's rows; never raises, never takes longer than ``STEPS * timeout`` (+1 s)."""
    if not src.enabled:
        return [Check(src.name, "source", SKIP, f"{src.type} source disabled (enabled: false)")]
    probe = _probe_of(src.type)
    if probe is None:
        return [Check(src.name, "source", PASS, f"nothing to reach: a {src.type} source makes its own readings")]
    bound = STEPS * timeout + 1.0
    try:
        return list(await asyncio.wait_for(
            probe(src, timeout, appliance_id=cfg.appliance_id, data_dir=str(cfg.data_dir)), bound))
    except (asyncio.TimeoutError, TimeoutError):
        return [Check(src.name, "probe", FAIL, f"the checks did not finish within {bound:g}s",
                      "the server accepts connections but stops answering: check its load and its log")]
    except Exception as exc:  # noqa: BLE001 - one broken probe must not hide the other sources' answers
        return [Check(src.name, "probe", FAIL, f"the probe failed: {type(exc).__name__}: {exc}",
                      "an unexpected error in the doctor itself: report it with this line")]


async def check_all(cfg: Any, timeout: float, names: Iterable[str] | None = None) -> list[Check]:
    wanted = set(names or ())
    sources = [s for s in cfg.sources if not wanted or s.name in wanted]
    missing = sorted(wanted - {s.name for s in cfg.sources})
    rows = [Check(n, "source", FAIL, "no source of this name in the config",
                  f"one of: {', '.join(s.name for s in cfg.sources) or 'none configured'}") for n in missing]
    if not sources and not missing:
        rows.append(Check("-", "sources", FAIL, "the config has no sources", "add one under sources:"))
    for got in await asyncio.gather(*(check_source(s, cfg, timeout) for s in sources)):
        rows.extend(got)
    return rows


def run(cfg: Any, timeout: float = 5.0, names: Iterable[str] | None = None) -> list[Check]:
    """The rows for every (or the named) source, secrets scrubbed. From a thread without a running loop."""
    rows = asyncio.run(check_all(cfg, timeout, names))
    scrub = Scrubber(also=secrets_of(cfg))
    return [dataclasses.replace(c, detail=scrub(c.detail), hint=scrub(c.hint)) for c in rows]


def report(checks: list[Check], as_json: bool = False, out: Callable[[str], None] = print) -> int:
    """Print the rows (a table, or JSON); the exit code is 1 when any check FAILED."""
    if as_json:
        out(json.dumps({"ok": not sourcereport.exit_code(checks), "counts": sourcereport.counts(checks),
                        "checks": [asdict(c) for c in checks]}, indent=2))
    else:
        for line in sourcereport.lines(checks):
            out(line)
        out(f"\ndoctor --sources: {sourcereport.verdict(checks)}")
    return sourcereport.exit_code(checks)


__all__ = ["STEPS", "check_all", "check_source", "report", "run", "secrets_of"]
