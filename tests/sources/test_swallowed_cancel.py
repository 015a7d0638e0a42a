"""A cancellation that an awaited library call swallowed still stops a collector's loop.

Python 3.11's ``asyncio.wait_for`` can drop a cancellation that arrives as its inner future
completes (CPython gh-86296); a Modbus source was seen stuck for good at shutdown that way.
The swallowing is injected here at the outermost edge (the poll), deterministically.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from edge.sources.context import raise_if_cancelled
from edge.sources.modbus.collector import Source as ModbusSource


async def _swallowing_poll(started: asyncio.Event, swallowed: list) -> int:
    """Like wait_for under gh-86296: the cancel arrives and is lost as the answer completes."""
    started.set()
    try:
        await asyncio.Event().wait()  # the answer is on its way until the cancel arrives
    except asyncio.CancelledError:
        swallowed.append(True)
    return 0


def test_raise_if_cancelled_raises_only_after_a_cancel_request():
    async def main():
        raise_if_cancelled()  # nothing asked: no-op
        me = asyncio.current_task()
        me.cancel()
        try:
            await asyncio.Event().wait()  # ends only by the cancel, delivered at this first suspension
        except asyncio.CancelledError:
            pass  # swallowed, as gh-86296 does
        with pytest.raises(asyncio.CancelledError):
            raise_if_cancelled()

    asyncio.run(main())


def test_a_modbus_poll_loop_stops_though_the_poll_swallowed_the_cancel():
    async def main():
        started, swallowed = asyncio.Event(), []
        fake = SimpleNamespace(counters={"overruns_total": 0},
                               poll_once=lambda blocks: _swallowing_poll(started, swallowed))
        task = asyncio.create_task(ModbusSource._group_loop(fake, 0.0, []))
        await started.wait()
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=5)
        assert task in done, "the poll loop went on after its cancellation was swallowed"
        assert swallowed and task.cancelled()

    asyncio.run(main())
