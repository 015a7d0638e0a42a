"""The worker and acker threads between paho and the spool: group commits, PUBACKs in arrival order.

paho's network thread only queues each message (``Pipeline.put``). The worker
thread takes what arrived (a group: up to ``batch_max`` messages, waiting at
most ``batch_delay`` after the first for more to join), has the source convert
it (``Source.convert``: readings and quarantines), and hands the whole group
to the spool in ONE ``ctx.submit`` plus one ``ctx.quarantine`` per unparseable
payload. When all futures of a group resolved, its message ids are
acknowledged, strictly in arrival order (MQTT 4.6.0-2), from the acker thread.
Nothing is acknowledged before its commit, so a crash anywhere leaves the
message with the broker, which redelivers it: at least once, duplicates
bounded by the in-flight window.

While the spool is full (``SpoolFull`` under ``when_full: block``) the worker
stops taking messages and nothing is acknowledged; the broker's in-flight
window (Receive Maximum / ``max_inflight_messages``) fills and the broker keeps
the rest queued for our session. When space returns, the refused groups are
resubmitted in order and the flow resumes.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from typing import TYPE_CHECKING

import paho.mqtt.client as mqtt

from edge.sources.states import State, refused_state

if TYPE_CHECKING:
    from edge.sources.mqtt.collector import Source


class Msg:
    __slots__ = ("gen", "mid", "qos", "topic", "payload", "dup", "ts")

    def __init__(self, gen: int, mid: int, qos: int, topic: bytes, payload: bytes, dup: bool, ts: int):
        self.gen, self.mid, self.qos, self.topic, self.payload, self.dup, self.ts = gen, mid, qos, topic, payload, dup, ts


class Group:
    """Messages committed together; acknowledged together once every future resolved."""

    __slots__ = ("msgs", "jobs", "pending", "failed", "done")

    def __init__(self, msgs: list[Msg]):
        self.msgs = msgs
        self.jobs: list[tuple[str, tuple]] = []  # ("submit", (items,)) / ("quarantine", (src, reason, raw, meta))
        self.pending = 0
        self.failed: list[tuple[tuple[str, tuple], BaseException]] = []
        self.done = False


class Pipeline:
    """The worker thread between paho and the spool (see the module docstring)."""

    def __init__(self, src: "Source"):
        self.src = src
        self.cfg = src.cfg
        self.ctx = src.ctx
        self.inbox: queue.SimpleQueue[Msg | None] = queue.SimpleQueue()
        self.window: collections.deque[Group] = collections.deque()
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = False
        self.blocked = False
        self.blocked_state = State.BLOCKED  # or DISK_FULL, by what the spool said
        self.thread = threading.Thread(target=self._run, name=f"mqtt-worker-{self.cfg.name}", daemon=True)
        # PUBACKs go out from their own thread: the spool writer thread that resolves the
        # futures is shared by every source and must not spend its time on socket writes.
        self.ack_needed = threading.Event()
        self.acker = threading.Thread(target=self._ack_loop, name=f"mqtt-acker-{self.cfg.name}", daemon=True)
        self.counts = collections.Counter()
        # Set by put() when batch_max - 1 messages wait behind the first: the group is complete.
        self.group_ready = threading.Event()

    def put(self, msg: Msg) -> None:
        """From paho's thread: queue one message; wake the worker once a whole group is waiting."""
        inbox = self.inbox
        inbox.put(msg)
        if inbox.qsize() >= self.cfg.batch_max - 1 and not self.group_ready.is_set():
            self.group_ready.set()

    def start(self) -> None:
        self.thread.start()
        self.acker.start()

    def stop(self, timeout: float) -> None:
        self.stopping = True
        self.inbox.put(None)
        self.wake.set()
        self.ack_needed.set()
        self.thread.join(timeout)
        self.acker.join(timeout)

    def _ack_loop(self) -> None:
        while not self.stopping:
            self.ack_needed.wait(0.5)
            self.ack_needed.clear()
            try:
                self._ack_ready()
            except Exception as exc:
                self.ctx.log.exception("mqtt acker error")
                self.ctx.status.error(f"acker: {type(exc).__name__}: {exc}")

    # ---- worker thread

    def _run(self) -> None:
        while not self.stopping:
            try:
                if self._retry_failed():
                    continue
                msgs = self._take()
                if msgs:
                    self._dispatch(msgs)
            except Exception as exc:  # a bug here must not silently stop acknowledging forever
                self.ctx.log.exception("mqtt worker error")
                self.ctx.status.error(f"worker: {type(exc).__name__}: {exc}")
                time.sleep(0.5)

    def _take(self) -> list[Msg]:
        try:
            first = self.inbox.get(timeout=0.5)
        except queue.Empty:
            return []
        if first is None:
            return []
        limit = self.cfg.batch_max
        # Wait at most batch_delay for the group to fill, and not a moment longer once it is
        # full: one wake-up per group (put() signals a full group), not one per message.
        delay = float(self.cfg.batch_delay)
        if delay and self.inbox.qsize() < limit - 1:
            self.group_ready.clear()
            if self.inbox.qsize() < limit - 1:
                self.group_ready.wait(delay)
        msgs = [first]
        get = self.inbox.get_nowait
        while len(msgs) < limit:
            try:
                m = get()
            except queue.Empty:
                break
            if m is None:
                break
            msgs.append(m)
        return msgs

    def _dispatch(self, msgs: list[Msg]) -> None:
        group = Group(msgs)
        items, quarantines = self.src.convert(msgs)
        if items:
            group.jobs.append(("submit", (items,)))
        for q in quarantines:
            group.jobs.append(("quarantine", q))
        with self.lock:
            self.window.append(group)
        if not group.jobs:  # e.g. only Sparkplug commands: nothing to store, ack right away
            with self.lock:
                group.done = True
            self.ack_needed.set()
            return
        self._start_jobs(group, group.jobs)

    def _start_jobs(self, group: Group, jobs: list[tuple[str, tuple]]) -> None:
        with self.lock:
            group.pending += len(jobs)
        for job in jobs:
            kind, args = job
            try:
                fut = self.ctx.submit(*args) if kind == "submit" else self.ctx.quarantine(*args)
            except Exception as exc:  # the writer refused synchronously (closed, full...)
                self._job_done(group, job, exc)
                continue
            fut.add_done_callback(lambda f, g=group, j=job: self._job_done(g, j, f.exception()))

    def _job_done(self, group: Group, job: tuple[str, tuple], exc: BaseException | None) -> None:
        # Runs on the spool writer thread: bookkeeping only.
        with self.lock:
            group.pending -= 1
            if exc is not None:
                group.failed.append((job, exc))
            elif job[0] == "submit":
                self.counts["committed"] += len(job[1][0])
            if group.pending == 0 and not group.failed:
                group.done = True
        if exc is not None:
            self.wake.set()
        elif group.done:
            self.ack_needed.set()

    def _ack_ready(self) -> None:
        acks: list[Msg] = []
        with self.lock:
            while self.window and self.window[0].done:
                acks.extend(self.window.popleft().msgs)
        if acks:
            self.src.ack(acks)

    def _retry_failed(self) -> bool:
        """Resubmit refused jobs in arrival order; while any is refused, take no new messages."""
        from edge.writer import SpoolFull

        with self.lock:
            failed = [(g, g.failed) for g in self.window if g.failed and g.pending == 0]
            for g, _ in failed:
                g.failed = []
        if not failed:
            if self.blocked:
                with self.lock:
                    still = any(g.failed for g in self.window)
                if not still:
                    self.blocked = False
                    self.src.set_flowing()
            return False
        full = any(isinstance(e, SpoolFull) for _, fl in failed for _, e in fl)
        first_exc = failed[0][1][0][1]
        self.blocked = True
        self.blocked_state = refused_state(first_exc) if full else State.BLOCKED
        if full:
            self.counts["spool_full_waits"] += 1
            self.src.set_blocked(f"spool full: not acknowledging, the broker keeps the messages ({first_exc})")
            self.src.wait_for_space(1.0)
        else:
            self.ctx.status.error(f"spool write failed, retrying: {type(first_exc).__name__}: {first_exc}")
            self.src.set_blocked(f"spool write failed, retrying: {type(first_exc).__name__}: {first_exc}")
            # Not wake.wait(): the failed resubmission itself sets wake, which would spin.
            time.sleep(1.0)
            self.wake.clear()
        if self.stopping:
            return True
        for g, fl in failed:
            self._start_jobs(g, [job for job, _ in fl])
        return True


def send_pubacks(client: mqtt.Client, mids: list[int]) -> None:
    """PUBACK every mid, in order, as ONE queued write.

    ``client.ack(mid, 1)`` queues one 4-byte packet, wakes paho's thread and costs one
    send() per message (~8 us of CPU in total, a third of paho's own cost per message).
    The same bytes concatenated go out with one send. Uses paho 2.2's ``_packet_queue``,
    the very call ``ack()`` makes (same thread safety); paho is pinned exactly.
    A PUBACK without a reason code means success in MQTT 5 as in 3.1.1.
    """
    queue_packet = getattr(client, "_packet_queue", None)
    if queue_packet is None:  # a paho without it: the slow, public way
        for mid in mids:
            client.ack(mid, 1)
        return
    n = len(mids)
    buf = bytearray(4 * n)
    buf[0::4] = b"\x40" * n  # PUBACK
    buf[1::4] = b"\x02" * n  # remaining length: the 2-byte packet id
    buf[2::4] = bytes(m >> 8 for m in mids)
    buf[3::4] = bytes(m & 0xFF for m in mids)
    queue_packet(mqtt.PUBACK, bytes(buf), 0, 0)
