"""asyncio helpers shared by the collector tests: run a source as a task, wait for a condition."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Callable


@contextlib.asynccontextmanager
async def running(source: Any, stop_timeout: float = 10.0):
    """``source.run()`` as a task for the duration of the block; cancelled (bounded) afterwards."""
    task = asyncio.create_task(source.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, stop_timeout)


async def wait_until(pred: Callable[[], Any], timeout: float = 15.0, every: float = 0.02,
                     what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise AssertionError(f"{what} not met within {timeout:.1f}s")
        await asyncio.sleep(every)
