"""One connect / reconnect / backoff loop for every source.

A collector with a connection implements a ``Session``::

    async def connect(self) -> None   # up to "collecting" (connect, log in, subscribe...); raise if not
    async def serve(self) -> None     # until the connection is gone: return or raise
    async def close(self) -> None     # tear down what connect() built, after a failure

and ``Supervisor.run()`` loops over it: it shows ``connecting``, turns every
failure into a ``Failure`` (a state from ``edge.sources.states``, a detail for
the operator, and how long to wait), reports it once per new problem (log
line) and on every attempt (``errors_total``), waits a capped exponential
backoff with full jitter (``edge.backoff``) or the failure's own wait (a
refused login waits ``auth_backoff``: retrying fast will not help), and resets
the backoff after a connection that stayed up ``healthy_after`` seconds.

Waking early: a source may give a cheap ``probe()`` (``tcp_probe(host, port)``: can a TCP
connection be opened?). While waiting out a backoff the supervisor probes once at the start:
if the endpoint answers already, the failure was not about reaching it (a refused session, a
certificate), and the full jittered delay is waited, so a server that accepts TCP but rejects
the session is not hammered. If it does not answer, it is probed every ``probe_every`` seconds
(at most a quarter of the delay) and the next attempt starts as soon as it answers: a server
back after a long outage is reconnected within about a second, not after up to
``reconnect_max``. A failure with its own wait (a refused login) is never cut short.

On cancellation the supervisor closes nothing: the source's ``run()`` owns
its last shutdown (MQTT still acknowledges its last commits on the way out).

The same loop restarts a whole collector that crashed (``edge.runner``), with
``RESTARTING`` as its failure state.

The policy itself (when to try again) is ``ReconnectPolicy``: the loop holds one, and a source
that cannot live inside the loop holds one too (a Modbus connection keeps polling while it is
down, every poll a BAD reading, so it asks the policy instead of sleeping in it).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from typing import Awaitable, Callable, Protocol

from edge.backoff import Backoff
from edge.sources.context import raise_if_cancelled
from edge.sources.states import State
from edge.sources.status import SourceStatus


class Failure(Exception):
    """A classified failure: the state to show, what to tell the operator, and how long to wait.

    ``wait``: seconds before the next attempt (None: the backoff's next delay).
    ``error``: count it in ``errors_total`` (a plain reconnect after a dropped connection is not an error).
    """

    def __init__(self, state: State, detail: str, *, wait: float | None = None, error: bool = True):
        super().__init__(detail)
        self.state = State(state)
        self.detail = detail
        self.wait = wait
        self.error = error


class ReconnectPolicy:
    """When to try again, for every source: capped exponential backoff with full jitter
    (``edge.backoff``), ``reconnect_initial`` up to ``reconnect_max``; the attempt count goes back
    to zero only after a connection stayed up ``healthy_after`` seconds, so an endpoint that
    accepts and drops at once backs off like one that refuses, instead of being retried at once.

    ``connected()`` when a connection is up; ``failed()`` after a failed attempt or a lost
    connection: the seconds to wait. ``down()`` alone when the wait is the failure's own."""

    def __init__(self, initial: float, cap: float, *, healthy_after: float = 30.0,
                 backoff: Backoff | None = None, clock: Callable[[], float] = time.monotonic):
        self.backoff = backoff or Backoff(initial=float(initial), cap=float(cap))
        self.healthy_after = healthy_after
        self.up_since: float | None = None
        self._clock = clock

    def connected(self) -> None:
        self.down()  # a connection before this one (a source that reopens a closed one at once) is judged first
        self.up_since = self._clock()

    def down(self) -> bool:
        """The connection is gone: True (and the backoff reset) when it had stayed up long enough."""
        healthy = self.up_since is not None and self._clock() - self.up_since >= self.healthy_after
        self.up_since = None
        if healthy:
            self.backoff.reset()  # it ran fine for a while: a new failure, not a crash loop
        return healthy

    def failed(self) -> float:
        self.down()
        return self.backoff.next_delay()


class Session(Protocol):
    async def connect(self) -> None: ...

    async def serve(self) -> None: ...

    async def close(self) -> None: ...


Probe = Callable[[], Awaitable[bool]]


def tcp_probe(host: str, port: int, timeout: float = 1.0) -> Probe:
    """A probe that says whether a TCP connection to host:port opens within ``timeout``."""

    async def probe() -> bool:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except (OSError, asyncio.TimeoutError):
            return False
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:  # a reset while closing: it answered, that is all we asked
            pass
        return True

    return probe


def probe_times(delay: float, every: float) -> list[float]:
    """Offsets (seconds from the start of a wait of ``delay``) at which to probe: ``every``
    apart, at most a quarter of the delay apart, never closer than 50 ms, none at the end."""
    step = max(0.05, min(every, delay / 4))
    n = int(delay / step)
    return [step * i for i in range(1, n + 1) if step * i < delay]


def describe_oserror(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def classify(exc: BaseException, phase: str, target: str) -> Failure:
    """The generic part: TLS, name resolution, refused/unreachable/timed out; anything else by phase."""
    if isinstance(exc, Failure):
        return exc
    if isinstance(exc, ssl.SSLError):
        why = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or str(exc)
        return Failure(State.TLS_ERROR, f"TLS handshake with {target} failed: {why}")
    if isinstance(exc, socket.gaierror):
        return Failure(State.CONNECT_FAILED, f"cannot reach {target}: the name does not resolve ({exc.strerror})")
    if phase == "connect" and isinstance(exc, (OSError, TimeoutError, asyncio.TimeoutError)):
        return Failure(State.CONNECT_FAILED, f"cannot reach {target}: {describe_oserror(exc) or 'timed out'}")
    state = State.RESTARTING if phase == "run" else State.DISCONNECTED
    return Failure(state, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


class Supervisor:
    def __init__(self, session: Session, status: SourceStatus, *, initial: float, cap: float,
                 target: str = "", healthy_after: float = 30.0, min_delay: float = 0.0,
                 classify: Callable[[BaseException, str], Failure | None] | None = None,
                 check: Callable[[], None] | None = None, log: logging.Logger | None = None,
                 backoff: Backoff | None = None, phase: str = "connect",
                 probe: Probe | None = None, probe_every: float = 1.0):
        """``classify(exc, phase)``: the protocol's own reading of a failure (None: the generic one).
        ``check()``: called after every failure; what it raises ends ``run()`` (a crash that
        reconnecting cannot cure). ``phase``: "run" for a whole collector (the runner).
        ``probe()``: is the endpoint reachable (``tcp_probe``)? Lets a backoff end early."""
        self.session = session
        self.status = status
        self.target = target
        self.policy = ReconnectPolicy(initial, cap, healthy_after=healthy_after, backoff=backoff)
        self.min_delay = min_delay
        self._classify = classify
        self._check = check
        self._phase = phase
        self.log = log or logging.getLogger("edge.sources")
        self.last_problem = ""
        self.connected_once = False
        self._probe = probe
        self.probe_every = probe_every
        self.woken_early = 0  # backoffs cut short because the endpoint answered again

    @property
    def backoff(self) -> Backoff:
        return self.policy.backoff

    def classify(self, exc: BaseException, phase: str) -> Failure:
        if self._classify is not None and not isinstance(exc, Failure):
            mine = self._classify(exc, phase)
            if mine is not None:
                return mine
        return classify(exc, phase, self.target)

    def report(self, failure: Failure) -> None:
        repeated = failure.detail == self.last_problem
        self.last_problem = failure.detail
        if not repeated:  # one line per new problem, not one per reconnect attempt
            self.log.warning("source %s: %s: %s", self.status.name, failure.state.value, failure.detail)
        if failure.error:
            self.status.error(failure.detail)
        self.status.set_state(failure.state, failure.detail)

    async def run(self) -> None:
        session, status = self.session, self.status
        while True:
            raise_if_cancelled()
            if self._phase == "connect":
                last = f" (last attempt: {self.last_problem})" if self.last_problem else ""
                status.set_state(State.CONNECTING, f"{self.target}{last}")
            phase = self._phase
            try:
                if phase == "connect":
                    await session.connect()
                    phase = "serve"
                    if self.connected_once:
                        status.reconnected()
                    self.connected_once = True
                self.policy.connected()
                await session.serve()
                failure = Failure(State.RECONNECTING, f"{self.target}: the connection ended; reconnecting", error=False)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure is classified, reported and retried
                failure = self.classify(exc, phase)
                if failure.state is State.RESTARTING:  # a collector crashed: the traceback is for its developer
                    self.log.error("source %s failed", status.name, exc_info=exc)
            try:
                await session.close()
            except Exception:  # noqa: BLE001 - a failed teardown must not end the supervision; it is logged
                self.log.exception("source %s: closing after a failure failed", status.name)
            self.report(failure)
            if self._check is not None:
                self._check()
            if failure.wait is not None:
                self.policy.down()
                await asyncio.sleep(failure.wait)  # its own wait (a refused login): never cut short
            else:
                await self.wait(max(self.min_delay, self.policy.failed()))

    async def _reachable(self) -> bool | None:
        """The probe's answer; None when the probe itself failed (then it neither shortens nor wakes)."""
        try:
            return bool(await self._probe())
        except Exception as exc:  # noqa: BLE001 - a broken probe must not end the supervision: no early wake
            self.log.debug("source %s: the reachability probe failed: %r", self.status.name, exc)
            return None

    async def wait(self, delay: float) -> None:
        """Sleep ``delay``, or less when the endpoint did not answer at the start and answers now."""
        times = probe_times(delay, self.probe_every) if self._probe is not None else []
        if not times:
            await asyncio.sleep(delay)
            return
        loop = asyncio.get_running_loop()
        start = loop.time()
        if await self._reachable() is not False:
            # It answers: the failure was the session, not the network. The whole jittered delay.
            await asyncio.sleep(max(0.0, start + delay - loop.time()))
            return
        for at in times:
            await asyncio.sleep(max(0.0, start + at - loop.time()))
            if loop.time() - start >= delay:
                return
            if await self._reachable():
                self.woken_early += 1
                self.log.info("source %s: %s answers again; reconnecting now (%.1f s of the %.1f s backoff left)",
                              self.status.name, self.target, max(0.0, start + delay - loop.time()), delay)
                return
        await asyncio.sleep(max(0.0, start + delay - loop.time()))

