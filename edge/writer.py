"""The single spool writer thread (contract point 1: emit -> commit -> ack).

Every mutation of the spool goes through one thread that owns the Spool's
connection. Requests queue up while a commit is in progress; the next loop turn
takes all of them and runs them in ONE transaction (group commit), commits with
synchronous=FULL, and only then resolves every waiter. SQLite calls never run
on an asyncio loop: ``emit`` awaits a concurrent future.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable, Sequence

from edge.spool import AppendResult, BadRequest, Spool, SpoolError, SpoolFull
from edge.spool.health import WriterHealth

log = logging.getLogger("edge.writer")

_CLOSE = object()
# Per-request failures that leave the shared transaction untouched: the
# request fails alone and the rest of the group still commits.
_CLEAN_FAILURES = (SpoolFull, BadRequest)


class WriterClosed(SpoolError):
    pass


class _Request:
    __slots__ = ("fn", "future", "is_append")

    def __init__(self, fn: Callable[[], Any], is_append: bool = False):
        self.fn = fn
        self.future: Future = Future()
        self.is_append = is_append


class SpoolWriter:
    """Owns ``spool`` from now on: call its mutating methods only through this object."""

    def __init__(self, spool: Spool, *, sample_interval_s: float = 2.0, expire_interval_s: float = 10.0,
                 max_group: int = 5000):
        self.spool = spool
        self.sample_interval_s = sample_interval_s
        self.expire_interval_s = expire_interval_s
        self.max_group = max_group
        self.groups = 0  # loop turns that committed at least one request
        self.on_commit: Callable[[], None] | None = None  # after a commit with new rows (the forwarder's notify)
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._close_lock = threading.Lock()
        self._space = threading.Condition()
        self._full = False
        self._health = WriterHealth(spool)
        self._thread = threading.Thread(target=self._run, name="spool-writer", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ API (any thread)

    def submit(self, items: Sequence[tuple[int, bytes]]) -> "Future[AppendResult]":
        """Append ``(collected_ts_us, body)`` items; the future resolves after the commit."""
        items = items if isinstance(items, (list, tuple)) else list(items)
        return self._put(_Request(lambda: self.spool.append(items), is_append=True))

    async def emit(self, items: Sequence[tuple[int, bytes]]) -> AppendResult:
        """asyncio face of ``submit``: returns only once the items are committed; raises SpoolFull."""
        return await asyncio.wrap_future(self.submit(items))

    def ack(self, upto_seq: int) -> Future:
        return self._put(_Request(lambda: self.spool.ack(upto_seq)))

    def dead_letter(self, seq: int, reason: str) -> Future:
        return self._put(_Request(lambda: self.spool.dead_letter(seq, reason)))

    def quarantine(self, source: str, reason: str, raw: bytes | str | None, meta: Any = None) -> Future:
        return self._put(_Request(lambda: self.spool.quarantine(source, reason, raw, meta)))

    def put_state(self, kind: str, name: str, obj: Any) -> Future:
        return self._put(_Request(lambda: self.spool.put_state(kind, name, obj)))

    def set_protected(self, upto_seq: int) -> Future:
        return self._put(_Request(lambda: self.spool.set_protected(upto_seq)))

    def sample(self) -> Future:
        return self._put(_Request(self.spool.sample))

    def call(self, fn: Callable[[Spool], Any]) -> Future:
        """Run ``fn(spool)`` on the writer thread (tools, tests: stats from the writer's own view)."""
        return self._put(_Request(lambda: fn(self.spool)))

    def wait_for_space(self, timeout: float | None = None) -> bool:
        """Block until an ack or drop freed room after a SpoolFull; True if it did within ``timeout``."""
        with self._space:
            return self._space.wait_for(lambda: not self._full or self._closed, timeout)

    async def wait_for_space_async(self, timeout: float | None = None) -> bool:
        return await asyncio.to_thread(self.wait_for_space, timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Finish everything queued, commit, checkpoint, close the spool."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            self._q.put(_CLOSE)
        self._thread.join(timeout)
        with self._space:
            self._space.notify_all()

    # ------------------------------------------------------------ the thread

    def _put(self, req: _Request) -> Future:
        with self._close_lock:
            if self._closed:
                req.future.set_exception(WriterClosed("spool writer is closed"))
                return req.future
            self._q.put(req)
        return req.future

    def _run(self) -> None:
        next_sample = time.monotonic()
        next_expire = time.monotonic() + self.expire_interval_s
        stop = False
        while not stop:
            wait = max(0.0, min(next_sample, next_expire) - time.monotonic())
            group: list[_Request] = []
            try:
                first = self._q.get(timeout=wait)
                stop = first is _CLOSE
                if not stop:
                    self._take(group, first)
                while len(group) < self.max_group:
                    nxt = self._q.get_nowait()
                    if nxt is _CLOSE:
                        stop = True
                        continue
                    self._take(group, nxt)
            except queue.Empty:  # the group is as large as the queue allows now: write it
                pass
            if group:
                self._safely(lambda: self._process(group))
            now = time.monotonic()
            if now >= next_expire:
                next_expire = now + self.expire_interval_s
                self._safely(self.spool.expire)
            if now >= next_sample:
                next_sample = now + self.sample_interval_s
                self._safely(self.spool.sample)
                if self._full and self.spool.has_room():
                    self._update_space(False, True)  # space came back without an ack (disk freed, budget raised)
            self._safely(lambda: self.spool.maintain_wal(idle=self._q.empty()))
        self._drain_after_close()
        self._safely(self.spool.sample)
        self._safely(self.spool.close)

    def _drain_after_close(self) -> None:
        group = []
        while True:
            try:
                req = self._q.get_nowait()
            except queue.Empty:
                break
            if req is not _CLOSE:
                self._take(group, req)
        if group:
            self._process(group)

    @staticmethod
    def _take(group: list[_Request], req: _Request) -> None:
        # From here on the caller can no longer cancel (an emit whose task was
        # cancelled before this point is skipped, never half-done).
        if req.future.set_running_or_notify_cancel():
            group.append(req)

    def _process(self, group: list[_Request]) -> None:
        freed_before = self.spool.freed
        outcomes: list[tuple[bool, Any]] = []
        try:
            with self.spool.transaction():
                for req in group:
                    try:
                        outcomes.append((True, req.fn()))
                    except _CLEAN_FAILURES as e:
                        outcomes.append((False, e))
        except Exception as exc:  # the whole transaction rolled back
            if len(group) == 1 and not self._room_came_back(exc):
                outcomes = [(False, exc)]
            else:
                # Replay one by one so a bad request fails alone and the good ones still commit.
                log.info("group of %d rolled back (%s); replaying one by one", len(group), exc)
                outcomes = [self._one(req) for req in group]
        self.groups += 1
        full = None
        for req, (ok, value) in zip(group, outcomes):
            if req.is_append:
                if not ok and isinstance(value, SpoolFull):
                    full = True
                elif ok and full is None:
                    full = False
        # Before resolving: a collector that just got SpoolFull must find the flag set when it waits.
        self._update_space(full, self.spool.freed != freed_before)
        if self.on_commit is not None and any(req.is_append and ok for req, (ok, _) in zip(group, outcomes)):
            self._safely(self.on_commit)
        for req, (ok, value) in zip(group, outcomes):
            if ok:
                req.future.set_result(value)
            else:
                req.future.set_exception(value)

    def _room_came_back(self, exc: Exception) -> bool:
        """The disk filled and the spool just gave its ballast back: one retry now can succeed."""
        return isinstance(exc, SpoolFull) and exc.cause == "disk_full" and self.spool.ballast_released_now

    def _one(self, req: _Request) -> tuple[bool, Any]:
        try:
            with self.spool.transaction():
                return True, req.fn()
        except Exception as e:
            return False, e

    def _update_space(self, full: bool | None, freed: bool) -> None:
        with self._space:
            if full:
                self._full = True
            elif freed or full is False:
                self._full = False
            if not self._full:
                self._space.notify_all()

    def _safely(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception as exc:
            self._health.failed(exc)
        else:
            if self.spool.disk_full:  # a request failed for lack of space (and was answered SpoolFull)
                self._health.failed(SpoolFull("disk_full", "the last spool write failed: disk full"))
            else:
                self._health.ok()
        if self._health.changed:
            self._health.record(self.spool.put_state)
