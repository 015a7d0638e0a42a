"""Drains the spool to ZeroBus through the official SDK, in its own thread.

The SQLite spool, not the SDK's memory, is the source of truth. The loop:
peek rows after the highest seq sent, frame each row once, send it as one
bounded batch (``ingest_records_offset``), keep up to ``max_inflight_batches``
per stream in flight, wait for the OLDEST batch's ack, then
``writer.ack(last seq of that batch)``. Acks arrive through the SDK's ack
callback into our own condition variable: ``wait_for_offset`` in SDK 1.10
ignores its timeout and cannot be interrupted, so every wait here is our own,
sliced and bounded by ``ack_timeout``.
Because batches are awaited in global seq order, the watermark only ever moves
over a contiguous prefix of acknowledged batches, with one or many streams.

On ANY failure the streams are dropped, we back off (capped exponential, full
jitter) and resend from the watermark on fresh streams: duplicates are bounded
by one in-flight window per failure and carry the stable (appliance_id, seq)
key for a downstream MERGE.

SDK recovery is switched OFF (``recovery=False``). With recovery on, the SDK
resends its unacked batches itself on a new RPC; against a server that accepts
streams but never acks, it reconnects and resends with no backoff until
``flush_timeout`` (5 min), producing unbounded duplicates, and its retries hide
the outage from us (no state, no backoff, no drill timeline). With recovery off
every failure surfaces at the next ingest / wait, we own the backoff, and a
resend is always one window from the spool. The price (a few-second blip
re-sends one window instead of being invisible) is what "bounded" costs.
"""

from __future__ import annotations

import base64
import bisect
import itertools
import logging
import operator
import os
import re
import threading
import time
import traceback
from collections import deque
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Callable

from edge.backoff import Backoff
from edge.config import ZerobusConfig
from edge.encode import appliance_prefix, varint
from edge.outcome import Blocked, Outcome, RejectRecord, Retry, classify

log = logging.getLogger("edge.forwarder")

# The SDK refuses one ingest call above 10,420,224 bytes (10 MiB - 64 KiB) as
# non-retriable; stay clear of it whatever the config says.
SDK_CALL_LIMIT = 10_420_224
CALL_MARGIN = 64 * 1024

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
RECENT_ERRORS = 20
RECENT_CUTS = 20
PERSIST_MIN_INTERVAL = 1.0
HEARTBEAT_INTERVAL = 10.0
IDLE_POLL = 0.05
WAIT_SLICE = 0.25
CLOSE_TIMEOUT = 2.0
STOP_GRACE = 3.0
PROTECT_TIMEOUT = 30.0

_PROXY_VARS = ("grpc_proxy", "GRPC_PROXY", "https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY")


class _Failure(Exception):
    """One classified failure, carried out of the pump to the retry loop."""

    def __init__(self, outcome: Outcome, phase: str):
        super().__init__(outcome.reason)
        self.outcome = outcome
        self.phase = phase


class _Stop(Exception):
    pass


class _Paused(Exception):
    pass


class _Acks:
    """Acks and the first error of one stream, pushed by the SDK's ack callback.

    ``wait_for_offset`` in SDK 1.10 ignores its timeout argument and cannot be
    interrupted; waiting on our own condition keeps every wait bounded (stop() answers
    within a fraction of a second, ``ack_timeout`` is enforced by us).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.acked = -1
        self.error: str | None = None

    def on_ack(self, offset: int) -> None:
        with self._cond:
            if offset > self.acked:
                self.acked = offset
            self._cond.notify_all()

    def on_error(self, offset: int, message: str) -> None:
        with self._cond:
            if self.error is None:
                self.error = str(message)
            self._cond.notify_all()

    def wait(self, offset: int, timeout: float) -> bool | None:
        """True when ``offset`` is acked, None if the stream failed first, False on timeout."""
        with self._cond:
            self._cond.wait_for(lambda: self.acked >= offset or self.error is not None, timeout)
            if self.acked >= offset:
                return True
            return None if self.error is not None else False

    def wait_error(self, timeout: float) -> str | None:
        with self._cond:
            self._cond.wait_for(lambda: self.error is not None, timeout)
            return self.error


def _make_callback(acks: _Acks):
    from zerobus.sdk.shared import AckCallback

    class _Callback(AckCallback):
        def on_ack(self, offset: int) -> None:
            acks.on_ack(offset)

        def on_error(self, offset: int, error_message: str) -> None:
            acks.on_error(offset, error_message)

    return _Callback()


@dataclass
class _Link:
    """One SDK stream and its ack tracker."""

    stream: Any
    acks: _Acks


@dataclass
class _Batch:
    stream: int
    first_seq: int
    last_seq: int
    count: int
    offset: int
    sent_at: float
    resend: bool
    head_since: float = 0.0


@dataclass
class _Cut:
    started_ts: float
    backlog_start: int
    backlog_peak: int = 0
    recovered_ts: float | None = None
    drained_ts: float | None = None
    errors: int = 0

    def as_dict(self) -> dict:
        return {
            "started_ts": self.started_ts,
            "outage_s": None if self.recovered_ts is None else round(self.recovered_ts - self.started_ts, 3),
            "recovered_ts": self.recovered_ts,
            "drained_ts": self.drained_ts,
            "drain_s": None if self.drained_ts is None or self.recovered_ts is None
            else round(self.drained_ts - self.recovered_ts, 3),
            "backlog_start": self.backlog_start,
            "backlog_peak": self.backlog_peak,
            "errors": self.errors,
        }


@dataclass
class _Counters:
    acked: int = 0
    sent: int = 0
    resent: int = 0
    dead_lettered: int = 0
    batches_acked: int = 0
    stream_creations: int = 0
    failures: int = 0
    cuts: int = 0
    latency_counts: list = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    latency_sum: float = 0.0


class Framer:
    """``edge.encode.frame`` for a run of rows, byte for byte, at about one concat per row.

    The seq varint is its low 7 bits (with the continuation bit) followed by the
    varint of ``seq >> 7``; the 128 possible heads of one block of seqs are built
    once, so framing a row is ``heads[seq & 127] + body``. Draining is bound by
    this loop and the spool read, so it matters at 250k readings/s.
    """

    def __init__(self, prefix: bytes):
        self.prefix = prefix
        self._block = -1
        self._heads: list[bytes] = []
        self._low = [prefix + bytes((i | 0x80,)) for i in range(128)]

    def frame_rows(self, rows: list) -> list[bytes]:
        """``[(seq, body), ...]`` in strictly increasing seq order, as ``peek`` returns them."""
        if not rows:
            return []
        first, last = rows[0][0], rows[-1][0]
        if first >= 128 and last - first == len(rows) - 1:
            return self._frame_run(first, last, rows)
        return self._frame_any(rows)

    def _frame_run(self, first: int, last: int, rows: list) -> list[bytes]:
        # Strictly increasing seqs spanning exactly len(rows) values: a contiguous run, the
        # usual case. The heads in seq order are whole blocks of 128, so both the heads and
        # the records are built by C-level map() calls, with no Python bytecode per row.
        heads: list[bytes] = []
        low = self._low
        for block in range(first >> 7, (last >> 7) + 1):
            hs = list(map(operator.add, low, itertools.repeat(varint(block), 128)))
            lo = first & 127 if block == first >> 7 else 0
            hi = (last & 127) + 1 if block == last >> 7 else 128
            heads.extend(hs[lo:hi] if lo or hi != 128 else hs)
        return list(map(operator.add, heads, map(operator.itemgetter(1), rows)))

    def _frame_any(self, rows: list) -> list[bytes]:
        out: list[bytes] = []
        append = out.append
        block, heads = self._block, self._heads
        for seq, body in rows:
            if seq >> 7 != block:
                if seq < 0:
                    raise ValueError(f"negative seq {seq}")
                block = seq >> 7
                heads = self._heads_for(block)
            append(heads[seq & 127] + body)
        self._block, self._heads = block, heads
        return out

    def _heads_for(self, block: int) -> list[bytes]:
        if block == 0:
            return [self.prefix + bytes((i,)) for i in range(128)]
        high = varint(block)
        return [self.prefix + bytes((i | 0x80,)) + high for i in range(128)]


class Scrubber:
    """Removes the client secret (and anything derived from it) from text we keep or log."""

    def __init__(self, client_id: str, secret: str):
        self._needles = []
        if secret:
            self._needles.append(secret)
            pair = f"{client_id}:{secret}".encode()
            self._needles.append(base64.b64encode(pair).decode())
            self._needles.append(base64.urlsafe_b64encode(pair).decode())
        self._auth = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
        self._userinfo = re.compile(r"(://)[^/@\s]+@")
        self._param = re.compile(r"(?i)(client_secret|access_token|password)=([^&\s\"']+)")

    def __call__(self, text: str) -> str:
        for needle in self._needles:
            text = text.replace(needle, "***")
        text = self._auth.sub(lambda m: f"{m.group(1)} ***", text)
        text = self._userinfo.sub(r"\1***@", text)
        return self._param.sub(r"\1=***", text)


def proxy_summary(env: dict[str, str] | None = None) -> str:
    """Which proxy variable gRPC will use (the first set, as the SDK picks it), without credentials."""
    env = dict(os.environ) if env is None else env
    scrub = Scrubber("", "")
    parts = []
    for var in _PROXY_VARS:
        if env.get(var):
            parts.append(f"{var}={scrub(env[var])}")
            break
    else:
        parts.append("no proxy variable set")
    no_proxy = env.get("no_grpc_proxy") or env.get("NO_PROXY") or env.get("no_proxy")
    if no_proxy:
        parts.append(f"NO_PROXY={no_proxy}")
    parts.append(f"SSL_CERT_FILE={'set (' + env['SSL_CERT_FILE'] + ')' if env.get('SSL_CERT_FILE') else 'unset (system trust store)'}")
    return ", ".join(parts)


def _default_sdk_factory(cfg: ZerobusConfig):
    from zerobus.sdk.sync import ZerobusSdk

    return ZerobusSdk(cfg.endpoint, cfg.workspace_url, application_name=cfg.application_name)


class Forwarder:
    """One forwarding thread for one spool. ``start()``, ``stop(timeout)``, ``state()``."""

    def __init__(
        self,
        cfg: ZerobusConfig,
        *,
        appliance_id: str,
        spool_path: str,
        writer: Any,
        reader: Any = None,
        sdk_factory: Callable[[ZerobusConfig], Any] | None = None,
        backoff: Backoff | None = None,
    ):
        self.cfg = cfg
        self.appliance_id = appliance_id
        self.spool_path = str(spool_path)
        self.writer = writer
        self._reader = reader
        self._sdk_factory = sdk_factory or _default_sdk_factory
        self._prefix = appliance_prefix(appliance_id)
        self._framer = Framer(self._prefix)
        self._scrub = Scrubber(cfg.client_id, str(cfg.client_secret))
        self._backoff = backoff or Backoff(float(cfg.reconnect_initial), float(cfg.reconnect_max))
        # batch_max_bytes counts spool bodies; the call also carries each record's framing
        # (prefix + seq varint) and the protobuf length prefix of every record.
        per_record = len(self._prefix) + 15
        self._batch_bytes = max(1024, min(int(cfg.batch_max_bytes),
                                          SDK_CALL_LIMIT - CALL_MARGIN - int(cfg.batch_max_records) * per_record))
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._retry = threading.Event()
        self._paused = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._c = _Counters()
        self._state = "starting"
        self._reason = ""
        self._since = time.time()
        self._started_ts: float | None = None
        self._last_ack_ts: float | None = None
        self._last_ack_seq: int | None = None
        self._acked_hi = 0
        self._sent_hi = 0
        self._inflight = 0
        self._errors: deque = deque(maxlen=RECENT_ERRORS)
        self._cuts: deque = deque(maxlen=RECENT_CUTS)
        self._cut: _Cut | None = None
        self._healthy = False
        self._rotation_ok = True
        self._last_persist = 0.0
        self._dirty = True
        # Last seqs of batches the service acked that the spool has not recorded yet; one
        # writer.ack() at a time covers all of them (an ack is a delete + fsync: coalescing
        # them keeps the spool's commit rate from capping the drain rate).
        self._unrecorded: deque[int] = deque()
        self._ack_future: Any = None
        self._ack_future_seq = 0
        self._ack_error = ""
        self._protected = 0  # bound applied by the writer
        self._protect_requested = 0
        self._protect_future: Any = None
        self._protect_future_seq = 0
        self._streams: list = []
        self._backlog = 0
        self._backlog_ts = 0.0

    # ------------------------------------------------------------------ public

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("forwarder already started")
        self._started_ts = time.time()
        self._thread = threading.Thread(target=self._main, name="forwarder", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop after the current bounded wait; unacked batches are resent next start. True if stopped."""
        self._stop.set()
        self._wake.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def notify(self) -> None:
        """New rows were committed: skip the idle poll delay."""
        self._wake.set()

    def pause(self) -> None:
        """Stop sending (operator request): the window in flight is finished, then the streams close.

        Collection and spooling go on; the state says ``paused`` until ``resume()``.
        """
        self._paused.set()
        self._wake.set()

    def resume(self) -> None:
        self._paused.clear()
        self._retry.set()
        self._wake.set()

    def retry_now(self) -> None:
        """Cut a backoff or blocked wait short (an operator fixed the cause: admin "retry now")."""
        self._retry.set()
        self._wake.set()

    def state(self) -> dict:
        """A JSON-able snapshot for people, the admin page and /metrics (never holds the secret).

        ``state``: starting | connecting | streaming | idle (caught up) | backing_off | blocked |
        paused | stopped; ``reason`` and ``since`` (epoch s) explain it. ``acked_seq`` is the highest seq
        the service acked (the spool's watermark follows it within one writer commit);
        ``*_total`` are counters since start; ``ack_latency_buckets`` are cumulative
        ``[upper_bound_s, count]`` pairs ending with ``"+Inf"`` (Prometheus histogram shape);
        ``egress_cuts`` lists the last outages (a failure after a healthy period): ``outage_s``
        until the first ack again, ``drain_s`` from there until caught up, backlog at the start
        and its peak in rows; the current one carries ``"open": true``.
        """
        with self._lock:
            c = self._c
            cum, buckets = 0, []
            for bound, n in zip(list(LATENCY_BUCKETS) + ["+Inf"], c.latency_counts):
                cum += n
                buckets.append([bound, cum])
            cuts = [x.as_dict() for x in self._cuts]
            if self._cut is not None:
                cuts.append({**self._cut.as_dict(), "open": True})
            return {
                "state": self._state,
                "reason": self._reason,
                "since": self._since,
                "started_ts": self._started_ts,
                "updated_ts": time.time(),
                "endpoint": self.cfg.endpoint,
                "workspace_url": self.cfg.workspace_url,
                "table": self.cfg.table,
                "streams": int(self.cfg.streams),
                "last_ack_ts": self._last_ack_ts,
                "last_ack_seq": self._last_ack_seq,
                "acked_seq": self._acked_hi,
                "sent_seq": self._sent_hi,
                "acked_total": c.acked,
                "sent_total": c.sent,
                "resent_total": c.resent,
                "dead_lettered_total": c.dead_lettered,
                "batches_acked_total": c.batches_acked,
                "batches_in_flight": self._inflight,
                "stream_creations_total": c.stream_creations,
                "failures_total": c.failures,
                "recent_errors": list(self._errors),
                "ack_latency_buckets": buckets,
                "ack_latency_sum": round(c.latency_sum, 6),
                "ack_latency_count": c.batches_acked,
                "egress_cuts_total": c.cuts,
                "egress_cuts": cuts,
                "backoff_attempt": self._backoff.attempt,
            }

    # ------------------------------------------------------------ main loop

    def _main(self) -> None:
        log.info(
            "forwarder for %s -> %s table %s (%d stream(s), batches of <=%d rows/<=%d bytes, window %d); %s",
            self.appliance_id, self.cfg.endpoint, self.cfg.table, self.cfg.streams,
            self.cfg.batch_max_records, self._batch_bytes, self.cfg.max_inflight_batches, proxy_summary(),
        )
        try:
            self._persist(force=True)
            while not self._stop.is_set():
                if self._paused.is_set():
                    self._wait_paused()
                    continue
                try:
                    self._session_or_isolate()
                except _Failure as f:
                    self._on_failure(f)
                except _Stop:
                    break
                except _Paused:
                    self._close_streams()
                    self._lower_protection(self._acked_hi)
                except Exception as exc:  # a bug or a spool error: keep the data, retry later
                    log.error("forwarder loop error: %s", self._scrub("".join(traceback.format_exception(exc))))
                    self._on_failure(_Failure(Retry(self._scrub(f"{type(exc).__name__}: {exc}")), "internal"))
        finally:
            self._close_streams()
            self._drain_ack_futures(timeout=2.0)
            self._set_state("stopped", "")
            self._persist(force=True)

    def _on_failure(self, f: _Failure) -> None:
        out = f.outcome
        self._close_streams()
        # A server that rotates a healthy stream (close signal, status OK) is no outage: one
        # immediate reconnect, no cut. Rotation again before any ack falls back to backoff.
        rotation = isinstance(out, Retry) and out.graceful and self._healthy and self._rotation_ok
        if rotation:
            self._rotation_ok = False
        starts_cut = self._healthy and self._cut is None and f.phase != "idle" and not rotation
        backlog = self._backlog_now() if starts_cut else 0
        with self._lock:
            self._c.failures += 1
            self._inflight = 0
            self._errors.append({"ts": time.time(), "phase": f.phase, "kind": type(out).__name__, "reason": out.reason})
            if starts_cut:
                self._c.cuts += 1
                self._cut = _Cut(started_ts=time.time(), backlog_start=backlog, backlog_peak=backlog)
            if self._cut is not None:
                self._cut.errors += 1
            self._healthy = rotation
        self._lower_protection(self._acked_hi)
        if isinstance(out, Blocked):
            log.error("forwarding blocked: %s (retrying every %.0fs)", out.reason, self.cfg.blocked_retry)
            self._set_state("blocked", out.reason)
            self._sleep(float(self.cfg.blocked_retry))
        elif rotation:
            log.info("the server closed the stream (%s); reconnecting", out.reason)
        else:
            delay = self._backoff.next_delay()
            log.warning("forwarding failed (%s): %s; retrying in %.2fs", f.phase, out.reason, delay)
            self._set_state("backing_off", out.reason)
            self._sleep(delay)

    def _session_or_isolate(self) -> None:
        try:
            self._session()
        except _Failure as f:
            if not isinstance(f.outcome, RejectRecord):
                raise
            self._close_streams()
            self._isolate(f.outcome)  # its own failures, stop and pause reach _main's handlers

    def _wait_paused(self) -> None:
        self._set_state("paused", "paused by an operator request")
        with self._lock:
            self._inflight = 0
        while self._paused.is_set() and not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            self._record_acks()
            self._persist()

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        self._retry.clear()
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or self._retry.is_set() or self._paused.is_set():
                return
            self._wake.wait(min(left, 1.0))
            self._wake.clear()
            self._update_cut_backlog()
            self._persist()

    # -------------------------------------------------------------- session

    def _session(self) -> None:
        """Open the streams and pump until a failure (raised) or stop (returns)."""
        self._set_state("connecting", "")
        if self._reader is None:
            from edge.spool import SpoolReader

            self._reader = SpoolReader(self.spool_path)
        self._update_cut_backlog(force=True)
        self._acked_hi = max(self._acked_hi, int(self._reader.watermark()))
        sdk = self._sdk_factory(self.cfg)
        self._streams = []
        links = [self._open(sdk) for _ in range(max(1, int(self.cfg.streams)))]
        self._pump(links)

    def _options(self, acks: _Acks):
        from zerobus.sdk.shared import StreamConfigurationOptions

        ack_ms = max(1000, int(float(self.cfg.ack_timeout) * 1000))
        return StreamConfigurationOptions(
            max_inflight_records=max(1, int(self.cfg.max_inflight_batches)) + 1,
            recovery=False,
            recovery_retries=0,  # creation is retried by us, with backoff and a visible state
            server_lack_of_ack_timeout_ms=ack_ms,
            flush_timeout_ms=ack_ms,
            recovery_timeout_ms=min(15000, ack_ms),
            stream_paused_max_wait_time_ms=ack_ms,
            callback_max_wait_time_ms=1000,
            ack_callback=_make_callback(acks),
        )

    def _open(self, sdk):
        from zerobus.sdk.shared import TableProperties

        from edge.pb.reading_pb2 import Reading

        if self._stop.is_set():
            raise _Stop()
        if self._paused.is_set():
            raise _Paused()
        acks = _Acks()
        try:
            stream = sdk.create_stream(
                client_id=self.cfg.client_id,
                client_secret=str(self.cfg.client_secret),
                table_properties=TableProperties(self.cfg.table, Reading.DESCRIPTOR),
                options=self._options(acks),
            )
        except Exception as exc:
            raise self._classified(exc, "create") from None
        with self._lock:
            self._c.stream_creations += 1
        link = _Link(stream, acks)
        self._streams.append(link)
        return link

    def _classified(self, exc: BaseException, phase: str) -> _Failure:
        from zerobus.sdk.shared import NonRetriableException

        text = self._scrub(f"{exc}") or type(exc).__name__
        return _Failure(classify(text, nonretriable=isinstance(exc, NonRetriableException), phase=phase), phase)

    def _stream_failure(self, link: _Link, exc: BaseException | None, phase: str) -> _Failure:
        """The real cause of a stream failure.

        An ingest call on a failed stream raises a plain "Stream is closed" (code
        Internal) that hides the cause; ``flush()`` on a failed stream raises the
        original, typed exception at once, so classify on that.
        """
        error = link.acks.wait_error(1.0 if exc is not None else 0.0)
        if error is not None or exc is None:
            flushed = _bounded_call(link.stream.flush, 2.0)
            if isinstance(flushed, BaseException):
                return self._classified(flushed, phase)
            if error is not None:
                return self._classified(Exception(error), phase)
        return self._classified(exc if exc is not None else Exception("stream failed"), phase)

    def _close_streams(self) -> None:
        links, self._streams = self._streams, []
        threads = [_closer(link.stream) for link in links]
        deadline = time.monotonic() + CLOSE_TIMEOUT
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))

    # ----------------------------------------------------------------- pump

    def _pump(self, streams: list[_Link]) -> None:
        window: deque[_Batch] = deque()
        cap = len(streams) * max(1, int(self.cfg.max_inflight_batches))
        sent_hi = self._acked_hi
        rr = 0
        limit_rows = int(self.cfg.batch_max_records)
        ack_timeout = float(self.cfg.ack_timeout)
        idle_since = None
        stop_by = None
        while True:
            if self._stop.is_set() or self._paused.is_set():
                # Let the batches already in flight be acked (fewer duplicates after a clean
                # restart), but never wait longer than STOP_GRACE.
                stop_by = stop_by or time.monotonic() + STOP_GRACE
                if not window or time.monotonic() > stop_by:
                    raise _Stop() if self._stop.is_set() else _Paused()
                cap = 0
            # Fill every stream's window.
            # Batches acked by the service but not yet recorded in the spool count against the
            # window too: after a crash everything above the spool's watermark is resent, so
            # this keeps the duplicates of a crash within one window.
            while len(window) + self._unsettled() < cap:
                rows = self._peek_protected(sent_hi, limit_rows)
                if not rows:
                    break
                last = rows[-1][0]
                records = self._framer.frame_rows(rows)
                link = streams[rr]
                try:
                    offset = link.stream.ingest_records_offset(records)
                except Exception as exc:
                    raise self._stream_failure(link, exc, "ingest") from None
                now = time.monotonic()
                resend = last <= self._sent_hi
                window.append(_Batch(rr, rows[0][0], last, len(rows), offset, now, resend, now if not window else 0.0))
                rr = (rr + 1) % len(streams)
                sent_hi = last
                with self._lock:
                    self._inflight = len(window)
                    if resend:
                        self._c.resent += len(rows)
                    else:
                        self._c.sent += len(rows)
                    self._sent_hi = max(self._sent_hi, last)
            if not window and self._unrecorded:
                # Nothing in flight but acks not yet in the spool: let the writer catch up.
                if self._ack_future is not None:
                    try:
                        self._ack_future.result(timeout=WAIT_SLICE)
                    except Exception:
                        self._stop.wait(WAIT_SLICE)
                self._record_acks()
                continue
            if not window:
                for link in streams:
                    if link.acks.error is not None:
                        # The server closed an idle stream (close signal, restart, idle timeout):
                        # reconnect now rather than on the next reading.
                        raise self._stream_failure(link, None, "idle")
                if idle_since is None:
                    idle_since = time.monotonic()
                    self._set_state("idle", "caught up")
                    self._on_caught_up()
                self._wake.wait(IDLE_POLL)
                self._wake.clear()
                self._record_acks()
                self._persist()
                continue
            idle_since = None
            if self._state != "streaming":
                self._set_state("streaming", "")
            head = window[0]
            if not head.head_since:
                head.head_since = time.monotonic()
            # No progress for ack_timeout (from send, or from becoming the head of a deep
            # window) means the server is not acking: fail and resend from the spool.
            left = head.head_since + ack_timeout - time.monotonic()
            if left <= 0:
                raise _Failure(Retry(f"no ack within {ack_timeout:g}s for seqs {head.first_seq}-{head.last_seq}"), "ack")
            link = streams[head.stream]
            done = link.acks.wait(head.offset, min(left, WAIT_SLICE))
            if done is None:
                raise self._stream_failure(link, None, "ack")
            if not done:
                self._record_acks()
                self._persist()
                continue
            window.popleft()
            self._on_acked(head)
            with self._lock:
                self._inflight = len(window)

    def _on_acked(self, b: _Batch) -> None:
        now = time.monotonic()
        latency = now - b.sent_at
        self._unrecorded.append(b.last_seq)
        self._record_acks()
        first_after_cut = False
        with self._lock:
            c = self._c
            c.acked += b.count
            c.batches_acked += 1
            c.latency_sum += latency
            for i, bound in enumerate(LATENCY_BUCKETS):
                if latency <= bound:
                    c.latency_counts[i] += 1
                    break
            else:
                c.latency_counts[-1] += 1
            self._acked_hi = max(self._acked_hi, b.last_seq)
            self._rotation_ok = True
            self._last_ack_seq = b.last_seq
            self._last_ack_ts = time.time()
            if not self._healthy:
                self._healthy = True
                first_after_cut = True
                if self._cut is not None and self._cut.recovered_ts is None:
                    self._cut.recovered_ts = time.time()
            self._dirty = True
        if first_after_cut:
            self._backoff.reset()
        self._persist()

    def _on_caught_up(self) -> None:
        with self._lock:
            self._healthy = True
            if self._cut is not None:
                now = time.time()
                if self._cut.recovered_ts is None:
                    self._cut.recovered_ts = now
                self._cut.drained_ts = now
                self._cuts.append(self._cut)
                self._cut = None
        self._backoff.reset()

    # ------------------------------------------------------------ isolation

    def _isolate(self, first: RejectRecord) -> None:
        """Bisect the oldest unacked batch on fresh streams until the rejected record is alone.

        Parts are sent one at a time in seq order, so every ack keeps the watermark
        contiguous. A part that passes is acked (a batch whose halves all pass is simply
        delivered); a single rejected record goes to the dead-letter table and its slot's
        loss marker is sent before anything after it, because ``ack`` deletes every row
        at or below the acked seq.
        """
        log.warning("the service rejected a batch (%s); isolating the record", first.reason)
        self._set_state("streaming", f"isolating a rejected record: {first.reason}")
        rows = self._peek_protected(self._acked_hi, int(self.cfg.batch_max_records))
        if not rows:
            return
        sdk = self._sdk_factory(self.cfg)
        stack = [rows]
        dead: set[int] = set()
        while stack:
            part = stack.pop()
            rejected = self._send_alone(sdk, part)
            if rejected is None:
                continue
            if len(part) > 1:
                mid = len(part) // 2
                stack.append(part[mid:])
                stack.append(part[:mid])
                continue
            seq = part[0][0]
            if seq in dead:
                raise _Failure(Blocked(f"the service rejects the loss marker at seq {seq}: {rejected.reason}"), "ingest")
            self._dead_letter(seq, rejected.reason)
            dead.add(seq)
            marker = self._reader.peek(seq - 1, 1, SDK_CALL_LIMIT)
            if marker and marker[0][0] == seq:
                stack.append(marker)

    def _send_alone(self, sdk, rows: list) -> RejectRecord | None:
        """Send ``rows`` on a fresh stream and wait for the ack. None = delivered and acked."""
        link = self._open(sdk)
        try:
            last = rows[-1][0]
            records = self._framer.frame_rows(rows)
            sent_at = time.monotonic()
            try:
                offset = link.stream.ingest_records_offset(records)
            except Exception as exc:
                f = self._stream_failure(link, exc, "ingest")
                if isinstance(f.outcome, RejectRecord):
                    return f.outcome
                raise f from None
            with self._lock:
                self._c.resent += len(rows)
                self._inflight = 1
            ack_timeout = float(self.cfg.ack_timeout)
            while True:
                if self._stop.is_set():
                    raise _Stop()
                left = sent_at + ack_timeout - time.monotonic()
                if left <= 0:
                    raise _Failure(Retry(f"no ack within {ack_timeout:g}s while isolating a rejected record"), "ack")
                done = link.acks.wait(offset, min(left, WAIT_SLICE))
                if done:
                    break
                if done is None:
                    f = self._stream_failure(link, None, "ack")
                    if isinstance(f.outcome, RejectRecord):
                        return f.outcome
                    raise f
            self._on_acked(_Batch(0, rows[0][0], last, len(rows), offset, sent_at, True))
            return None
        finally:
            self._close_streams()
            with self._lock:
                self._inflight = 0

    def _dead_letter(self, seq: int, reason: str) -> None:
        log.error("seq %d rejected by the service, moved to dead letters: %s", seq, reason)
        self.writer.dead_letter(seq, reason).result(timeout=60)
        with self._lock:
            self._c.dead_lettered += 1
            self._errors.append({"ts": time.time(), "phase": "ingest", "kind": "RejectRecord",
                                 "reason": f"seq {seq} dead-lettered: {reason}"})
            self._dirty = True

    # -------------------------------------------------------- writer glue

    # The spool's drop_oldest deletes the oldest undelivered rows, exactly the ones we read
    # next, and replaces them by a loss marker at the first dropped seq. A row must therefore
    # be protected (``writer.set_protected``, applied on the writer thread) BEFORE we read it:
    # otherwise a drop between our peek and the send could put a marker covering seqs beyond
    # our batch inside it, and our ack would delete that marker undelivered. So the bound is
    # requested one batch ahead, waited for before the peek, and a batch is cut at the bound.

    def _peek_protected(self, after: int, limit_rows: int) -> list:
        for _ in range(3):
            self._ensure_protected(after + limit_rows)
            rows = self._reader.peek(after, limit_rows, self._batch_bytes)
            if not rows or rows[-1][0] <= self._protected:
                break
            # Gaps (loss markers cover seq ranges): keep only what the bound covers.
            keep = bisect.bisect_right([seq for seq, _ in rows], self._protected)
            if keep:
                rows = rows[:keep]
                break
            after = rows[0][0] - 1
        else:
            return []
        if rows:
            self._request_protection(rows[-1][0] + limit_rows)  # pipelined for the next batch
        return rows

    def _request_protection(self, seq: int) -> None:
        if seq <= self._protect_requested:
            return
        self._settle_protection(0.0)
        if self._protect_future is None:
            self._protect_future = self.writer.set_protected(seq)
            self._protect_future_seq = seq
            self._protect_requested = seq

    def _settle_protection(self, timeout: float) -> None:
        fut = self._protect_future
        if fut is None:
            return
        try:
            fut.result(timeout=timeout)
        except FutureTimeout:
            return
        except Exception as exc:
            self._protect_future = None
            self._protect_requested = self._protected
            raise _Failure(Retry(self._scrub(f"spool writer refused set_protected: {exc}")), "internal") from None
        self._protect_future = None
        self._protected = max(self._protected, self._protect_future_seq)

    def _ensure_protected(self, seq: int) -> None:
        deadline = time.monotonic() + PROTECT_TIMEOUT
        while self._protected < seq:
            self._request_protection(seq)
            self._settle_protection(min(WAIT_SLICE, max(0.0, deadline - time.monotonic())))
            if self._stop.is_set():
                raise _Stop()
            if time.monotonic() > deadline and self._protected < seq:
                raise _Failure(Retry(f"spool writer did not apply set_protected within {PROTECT_TIMEOUT:g}s"), "internal")

    def _lower_protection(self, seq: int) -> None:
        """Nothing is in flight beyond ``seq`` any more: let drop_oldest have the rest."""
        self._protect_future = None
        self._protected = min(self._protected, seq)
        self._protect_requested = seq
        try:
            self.writer.set_protected(seq)
        except Exception as exc:  # the writer is closing: the next session re-protects anyway
            log.debug("set_protected(%d) failed: %s", seq, exc)

    def _record_acks(self) -> None:
        """Settle the writer.ack in progress; start one covering every acked batch not yet recorded."""
        fut = self._ack_future
        if fut is not None:
            if not fut.done():
                return
            self._ack_future = None
            exc = fut.exception()
            if exc is None:
                while self._unrecorded and self._unrecorded[0] <= self._ack_future_seq:
                    self._unrecorded.popleft()
                self._ack_error = ""
            else:
                # The watermark did not move: those rows stay and may be resent (duplicates,
                # never loss). Retried with the next ack; logged once per distinct error.
                text = f"ack not recorded in the spool: {type(exc).__name__}: {exc}"
                if text != self._ack_error:
                    self._ack_error = text
                    self._record_error("spool", text)
        if self._unrecorded:
            self._ack_future_seq = self._unrecorded[-1]
            self._ack_future = self.writer.ack(self._ack_future_seq)

    def _unsettled(self) -> int:
        self._record_acks()
        return len(self._unrecorded)

    def _drain_ack_futures(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self._unrecorded and time.monotonic() < deadline:
            self._record_acks()
            fut = self._ack_future
            if fut is None:
                break
            try:
                fut.result(timeout=max(0.0, deadline - time.monotonic()))
            except Exception:
                pass
            if self._ack_error:
                break

    def _record_error(self, phase: str, reason: str) -> None:
        reason = self._scrub(reason)
        log.warning("%s", reason)
        with self._lock:
            self._errors.append({"ts": time.time(), "phase": phase, "kind": "Error", "reason": reason})
            self._dirty = True

    # ----------------------------------------------------------- state

    def _set_state(self, state: str, reason: str) -> None:
        with self._lock:
            if state == self._state and reason == self._reason:
                return
            routine = {state, self._state} <= {"idle", "streaming"}
            self._state, self._reason, self._since = state, reason, time.time()
            self._dirty = True
        # Trickling data flips idle <-> streaming many times a second: those go out with
        # the ~1/s persistence; every other transition is written at once.
        self._persist(force=not routine)

    def _persist(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force:
            gap = now - self._last_persist
            if gap < PERSIST_MIN_INTERVAL or (not self._dirty and gap < HEARTBEAT_INTERVAL):
                return
        self._last_persist = now
        self._dirty = False
        try:
            self.writer.put_state("forwarder", "main", self.state())
        except Exception as exc:  # the state is advisory; never let it stop delivery
            log.debug("could not persist forwarder state: %s", exc)

    def _backlog_now(self) -> int:
        try:
            stats = self._reader.stats()
            self._backlog = int(stats.get("depth_rows") or 0)
        except Exception:
            pass
        self._backlog_ts = time.monotonic()
        return self._backlog

    def _update_cut_backlog(self, force: bool = False) -> None:
        if self._cut is None or (not force and time.monotonic() - self._backlog_ts < 1.0):
            return
        backlog = self._backlog_now()
        with self._lock:
            if self._cut is not None:
                self._cut.backlog_peak = max(self._cut.backlog_peak, self._cut.backlog_start, backlog)
                self._dirty = True


def _bounded_call(fn: Callable[[], Any], timeout: float) -> Any:
    """Run ``fn`` in a helper thread; its exception or result, or None if it did not finish in time."""
    box: list = [None]

    def run():
        try:
            box[0] = fn()
        except BaseException as exc:  # returned, not raised: the caller classifies it
            box[0] = exc

    t = threading.Thread(target=run, name="zerobus-call", daemon=True)
    t.start()
    t.join(timeout)
    return box[0]


def _closer(stream) -> threading.Thread:
    """Close a stream in the background: close() waits for in-flight acks, which a dead server never sends."""

    def run():
        try:
            stream.close()
        except Exception:
            pass

    t = threading.Thread(target=run, name="zerobus-close", daemon=True)
    t.start()
    return t
