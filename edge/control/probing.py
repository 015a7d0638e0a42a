"""What a source probe returns (``edge doctor --sources``), and the two helpers every probe needs.

A probe (``edge/sources/<type>/probe.py``) is ``async def probe(cfg, timeout, *, appliance_id,
data_dir) -> list[Check]``: one row per check (reach, security, trust, login, read, ...), each
PASS, WARN, FAIL or SKIP (not run because a check it depends on failed), with what it saw and,
unless it passed, one line that says how to fix it. Checks are plain data: the runner scrubs
secrets out of them, prints them, and the appliance stores them for the admin page.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

PASS, WARN, FAIL, SKIP = "PASS", "WARN", "FAIL", "SKIP"
STATUSES = (PASS, WARN, FAIL, SKIP)
T = TypeVar("T")


@dataclass(frozen=True)
class Check:
    source: str
    name: str
    status: str
    detail: str
    hint: str = ""

    @property
    def failed(self) -> bool:
        return self.status == FAIL


class Checks:
    """A probe's rows, in order; each method returns whether the check let the next ones run."""

    def __init__(self, source: str):
        self.source = source
        self.rows: list[Check] = []

    def add(self, name: str, status: str, detail: str, hint: str = "") -> bool:
        self.rows.append(Check(self.source, name, status, detail, "" if status == PASS else hint))
        return status != FAIL

    def passed(self, name: str, detail: str) -> bool:
        return self.add(name, PASS, detail)

    def warn(self, name: str, detail: str, hint: str) -> bool:
        return self.add(name, WARN, detail, hint)

    def fail(self, name: str, detail: str, hint: str) -> bool:
        return self.add(name, FAIL, detail, hint)

    def skip(self, names: list[str] | tuple[str, ...], why: str) -> None:
        for name in names:
            self.add(name, SKIP, f"not run: {why}")


async def off_loop(fn: Callable[[], T], timeout: float) -> T:
    """``fn()`` on a daemon thread, awaited at most ``timeout`` seconds (raises TimeoutError).

    Not ``asyncio.to_thread``: a blocking call that never returns would hold the default
    executor, and ``asyncio.run`` waits for it at exit; a daemon thread is left behind instead.
    """
    loop = asyncio.get_running_loop()
    fut: asyncio.Future = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if not fut.done():
            (fut.set_result if ok else fut.set_exception)(value)

    def work() -> None:
        try:
            value, ok = fn(), True
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task, which re-raises it
            value, ok = exc, False
        try:
            loop.call_soon_threadsafe(settle, ok, value)
        except RuntimeError:  # the loop closed meanwhile: the doctor gave up on this call and finished
            return

    threading.Thread(target=work, name="doctor-probe", daemon=True).start()
    return await asyncio.wait_for(fut, timeout)


async def reach(checks: Checks, host: str, port: int, timeout: float, field: str) -> bool:
    """The ``reach`` check: a TCP connection to host:port opens within ``timeout``."""
    where = f"{host}:{port}"
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except socket.gaierror as exc:
        return checks.fail("reach", f"{host} does not resolve ({exc.strerror})",
                           f"check {field}: the name is unknown to this host's DNS (or /etc/hosts)")
    except ConnectionRefusedError:
        return checks.fail("reach", f"{where} refused the connection",
                           f"nothing listens on {where}: check {field} (the port) and that the server runs")
    except (asyncio.TimeoutError, TimeoutError):
        return checks.fail("reach", f"no answer from {where} within {timeout:g}s",
                           f"a firewall drops the traffic or the address is wrong: check {field} and the route")
    except OSError as exc:
        return checks.fail("reach", f"{where}: {exc.strerror or exc}",
                           f"this host has no route to {host}: check {field}, the network and the VLAN")
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:  # a reset while closing: the connection opened, which is all this check asks
        pass
    return checks.passed("reach", f"TCP connection to {where} opened")


__all__ = ["Check", "Checks", "FAIL", "PASS", "SKIP", "STATUSES", "WARN", "off_loop", "reach"]
