"""The one seam between a source and the spool writer.

A source hands its readings to a ``Sink`` and to nothing else. Every argument
and every result that crosses it is plain, picklable data: ``items`` is a list
of ``(collected_ts_us: int, body: bytes)``, a quarantine is ``(source: str,
reason: str, raw: bytes, meta: dict of str/int/float/bool/None)``, a result is
an ``AppendResult`` (a small dataclass of ints and a bool) and a refusal is an
exception (``edge.writer.SpoolFull``). No callback, lock, connection or
generator crosses it.

That is what lets a source move into a worker process of its own later: the
worker gets a ``Sink`` whose methods send these values over a pipe and the
appliance's side calls the real writer with them (not built: today every
source runs in the appliance process and the sink *is* the ``SpoolWriter``).

The contract that makes loss impossible: a collector acknowledges its source
(MQTT PUBACK, HTTP 200, ...) only after ``emit`` returned, or the future from
``submit``/``quarantine`` resolved without an exception.
"""

from __future__ import annotations

import concurrent.futures
from typing import TYPE_CHECKING, Any, Awaitable, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:  # the spool owns the result type
    from edge.spool import AppendResult

Item = tuple[int, bytes]


@runtime_checkable
class Sink(Protocol):
    def emit(self, items: Sequence[Item]) -> Awaitable["AppendResult"]:
        """Await until the items are committed; raises ``SpoolFull`` under ``when_full: block``."""

    def submit(self, items: Sequence[Item]) -> concurrent.futures.Future:
        """The same from a thread that is not the event loop's: a future of the ``AppendResult``."""

    def quarantine(self, source: str, reason: str, raw: bytes, meta: dict[str, Any]) -> concurrent.futures.Future:
        """Keep a payload that could not be parsed, with the reason (a future that resolves when stored)."""

    def wait_for_space_async(self, timeout: float | None = None) -> Awaitable[bool]:
        """Await until the spool accepts data again (True) or the timeout passed (False)."""
