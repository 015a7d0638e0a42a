"""What every collector gets: ``SourceContext``, and the spool-full wait for sources that cannot push back.

A source package (``edge/sources/<proto>/``) defines ``Config`` (its YAML keys)
and ``Source``::

    class Source:
        def __init__(self, cfg: Config, ctx: SourceContext): ...
        async def run(self) -> None:   # runs until cancelled

A source with a connection hands its connect / reconnect / backoff to
``edge.sources.supervisor.Supervisor`` and reports through ``ctx.status``
(``edge.sources.status``), in the states of ``edge.sources.states``.
Readings go through the functions of a ``Sink`` (``edge.sources.sink``: the
seam, plain data only). An item is ``(collected_ts_us, body)`` with the body
from ``edge.encode``. When the spool refuses data (``SpoolFull`` under
``when_full: block``) the collector keeps the data where it came from (no
PUBACK, HTTP 503) and waits with ``ctx.wait_for_space``. Errors are reported
through ``ctx.status``, never swallowed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence

from edge.sources.sink import Item, Sink
from edge.sources.states import refused_state
from edge.sources.status import SourceStatus


@dataclass
class SourceContext:
    appliance_id: str
    data_dir: Path
    # emit: await until the items are committed; raises edge.writer's SpoolFull under block.
    emit: Callable[[Sequence[Item]], Awaitable[Any]]
    # submit: the same from a non-asyncio thread; returns a concurrent.futures.Future.
    submit: Callable[[Sequence[Item]], concurrent.futures.Future]
    # quarantine(source, reason, raw, meta) -> Future: keep a payload we could not parse.
    quarantine: Callable[[str, str, bytes, dict], concurrent.futures.Future]
    # wait_for_space(timeout_s) -> bool: await until the spool accepts data again.
    wait_for_space: Callable[[float], Awaitable[bool]]
    status: SourceStatus
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("edge.sources"))
    # Readiness/stats of other parts (e.g. forwarder streaming) for sources that report them (http).
    stats: Callable[[], dict] | None = None

    @classmethod
    def for_sink(cls, sink: Sink, status: SourceStatus, *, appliance_id: str, data_dir: Path,
                 log: logging.Logger | None = None, stats: Callable[[], dict] | None = None) -> "SourceContext":
        """The context of a source that writes into ``sink`` (the spool writer, or a stand-in)."""
        return cls(
            appliance_id=appliance_id, data_dir=Path(data_dir), emit=sink.emit, submit=sink.submit,
            quarantine=sink.quarantine, wait_for_space=sink.wait_for_space_async, status=status,
            log=log or logging.getLogger(f"edge.sources.{status.name}"), stats=stats,
        )


async def emit_with_backpressure(ctx: SourceContext, items: Sequence[Item], *, retry_every: float = 1.0) -> Any:
    """Emit, and while the spool is full under ``block`` wait for space and retry.

    For sources that cannot push back on their device (OPC-UA, Modbus, synthetic):
    the readings stay in this coroutine's memory, and polling/subscriptions slow
    down naturally because the caller awaits here.
    """
    from edge.writer import SpoolFull  # the writer module owns the exception

    while True:
        try:
            return await ctx.emit(items)
        except SpoolFull as exc:
            ctx.status.set_state(refused_state(exc), f"spool full: {exc}")
            await ctx.wait_for_space(retry_every)


def raise_if_cancelled() -> None:
    """Raise the cancellation an awaited call swallowed, so a collector's loop always stops.

    Python 3.11's ``asyncio.wait_for`` drops a cancellation that arrives as its inner future
    completes (CPython gh-86296, fixed in 3.12); pymodbus and asyncua await through it, and a
    ``while True`` loop around them then never ends (a Modbus source seen stuck for good at
    shutdown on a loaded host). The task still counts the request (``Task.cancelling()``).
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
