"""Drains the spool to a Sink (the ZeroBus SDK) in its own thread: window, watermark, retries.

The SQLite spool, not the SDK's memory, is the source of truth. The loop: peek rows
after the highest seq sent, frame each row once, send it as one bounded batch, keep a
window of batches in flight, and as the OLDEST batch is acked, ``writer.ack(its last
seq)``. Because batches are awaited in global seq order, the watermark only ever moves
over a contiguous prefix of acknowledged batches, with one or many streams.

On a failure the streams are dropped, we back off (capped exponential, full jitter; cut
short when an uplink that did not answer answers again, edge/forward/reach.py) and
resend from the watermark on fresh streams: duplicates are bounded by one in-flight
window per failure and carry the stable (appliance_id, seq) key for a downstream MERGE.
SDK recovery is off (edge/forward/sink.py says why).
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from typing import Any, Callable

from edge.backoff import Backoff
from edge.config import ZerobusConfig
from edge.encode import appliance_prefix
from edge.forward.framing import Framer
from edge.forward.isolate import SDK_CALL_LIMIT, isolate
from edge.forward.pace import Pace
from edge.forward.pump import Paused, Pump
from edge.forward.reach import TIMEOUT_S, Reach
from edge.forward.scrub import Scrubber, proxy_summary
from edge.forward.sink import AckSignal, Failure, Sink, ZerobusSink, close_all
from edge.forward.spoolside import WAIT_SLICE, SpoolSide, Stopped
from edge.forward.telemetry import Telemetry
from edge.outcome import Blocked, RejectRecord, Retry

log = logging.getLogger("edge.forwarder")

CALL_MARGIN = 64 * 1024
IDLE_POLL = 5.0  # notify() wakes the loop on every commit; this is only a safety net
INITIAL_WINDOW_BYTES = 1024 * 1024


class Forwarder:
    """One forwarding thread for one spool. ``start()``, ``stop(timeout)``, ``state()``, ``notify()``."""

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
        sink: Sink | None = None,
    ):
        self.cfg = cfg
        self.appliance_id = appliance_id
        self.spool_path = str(spool_path)
        self.writer = writer
        prefix = appliance_prefix(appliance_id)
        self.framer = Framer(prefix)
        self._scrub = Scrubber(cfg.client_id, str(cfg.client_secret))
        self.sink: Sink = sink or ZerobusSink(cfg, self._scrub, sdk_factory)
        self._backoff = backoff or Backoff(float(cfg.reconnect_initial), float(cfg.reconnect_max))
        self.reach = Reach(str(cfg.endpoint))
        # batch_max_bytes counts spool bodies; the call also carries each record's framing
        # (prefix + seq varint) and the protobuf length prefix of every record.
        per_record = len(prefix) + 15
        batch_bytes = max(1024, min(int(cfg.batch_max_bytes),
                                    SDK_CALL_LIMIT - CALL_MARGIN - int(cfg.batch_max_records) * per_record))
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._retry = threading.Event()
        self._paused = threading.Event()
        self._thread: threading.Thread | None = None
        self.telemetry = Telemetry(lambda st: writer.put_state("forwarder", "main", st), self._static)
        self.spool = SpoolSide(writer, reader, self._stop, batch_bytes, self._record_error)
        self.rotation_ok = True
        max_bytes = int(cfg.max_inflight_bytes)
        self.pace = Pace(max_bytes=max_bytes, min_bytes=min(batch_bytes, 64 * 1024), max_streams=int(cfg.streams),
                         initial_bytes=min(max_bytes, INITIAL_WINDOW_BYTES))
        self._pace_figures: dict = self.pace.figures(time.monotonic()).as_dict()
        self._streams: list = []
        self._signal: AckSignal | None = None  # the current session's, so notify() wakes its waits

    # ------------------------------------------------------------------ public

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("forwarder already started")
        self.telemetry.started_ts = time.time()
        self._thread = threading.Thread(target=self._main, name="forwarder", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop after the current bounded wait; unacked batches are resent next start. True if stopped."""
        self._stop.set()
        self._kick()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def notify(self) -> None:
        """New rows were committed (the writer's on_commit): wake an idle loop at once."""
        self._kick()

    def pause(self) -> None:
        """Stop sending (operator request): the window in flight is finished, then the streams close.

        Collection and spooling go on; the state says ``paused`` until ``resume()``.
        """
        self._paused.set()
        self._kick()

    def resume(self) -> None:
        self._paused.clear()
        self._retry.set()
        self._kick()

    def retry_now(self) -> None:
        """Cut a backoff or blocked wait short (an operator fixed the cause: admin "retry now")."""
        self._retry.set()
        self._kick()

    def _kick(self) -> None:
        self._wake.set()
        signal = self._signal
        if signal is not None:
            signal.kick()

    def stopping(self) -> bool:
        return self._stop.is_set()

    def paused(self) -> bool:
        return self._paused.is_set()

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
        return self.telemetry.snapshot()

    def _static(self) -> dict:
        return {
            "endpoint": self.cfg.endpoint,
            "workspace_url": self.cfg.workspace_url,
            "table": self.cfg.table,
            "streams": int(self.cfg.streams),
            # The most that may be in flight (readings over all streams, bytes): window / RTT bounds the drain.
            "max_inflight_records": int(self.cfg.streams) * int(self.cfg.max_inflight_batches)
            * int(self.cfg.batch_max_records),
            "max_inflight_bytes": int(self.cfg.max_inflight_bytes),
            "backoff_attempt": self._backoff.attempt,
            "drain": self._pace_figures,
        }

    def publish_pace(self) -> None:
        """The pace's figures for state(), computed on the loop's thread (state() runs on others)."""
        self._pace_figures = self.pace.figures(time.monotonic()).as_dict()

    # ------------------------------------------------------------ main loop

    def _main(self) -> None:
        log.info(
            "forwarder for %s -> %s table %s (%d stream(s), batches of <=%d rows/<=%d bytes, window %d); %s",
            self.appliance_id, self.cfg.endpoint, self.cfg.table, self.cfg.streams,
            self.cfg.batch_max_records, self.spool.batch_bytes, self.cfg.max_inflight_batches, proxy_summary(),
        )
        try:
            self.telemetry.persist(force=True)
            while not self._stop.is_set():
                if self._paused.is_set():
                    self._wait_paused()
                    continue
                try:
                    self._session_or_isolate()
                except Failure as f:
                    self._on_failure(f)
                except Stopped:
                    break
                except Paused:
                    self._close_streams()
                    self.spool.lower_protection(self.telemetry.acked_hi)
                except Exception as exc:  # a bug or a spool error: keep the data, retry later
                    log.error("forwarder loop error: %s", self._scrub("".join(traceback.format_exception(exc))))
                    self._on_failure(Failure(Retry(self._scrub(f"{type(exc).__name__}: {exc}")), "internal"))
        finally:
            self._close_streams()
            self.spool.drain_acks(timeout=2.0)
            self.telemetry.set_state("stopped", "")
            self.telemetry.persist(force=True)

    def _on_failure(self, f: Failure) -> None:
        out = f.outcome
        self._close_streams()
        # A server that rotates a healthy stream (close signal, status OK) is no outage: one
        # immediate reconnect, no cut. Rotation again before any ack falls back to backoff.
        rotation = isinstance(out, Retry) and out.graceful and self.telemetry.healthy and self.rotation_ok
        if rotation:
            self.rotation_ok = False
        throttled = isinstance(out, Retry) and out.throttled
        self.telemetry.failed(f.phase, type(out).__name__, out.reason, routine=rotation or throttled,
                              backlog=self.spool.backlog)
        self.spool.lower_protection(self.telemetry.acked_hi)
        if isinstance(out, Blocked):
            log.error("forwarding blocked: %s (retrying every %.0fs)", out.reason, self.cfg.blocked_retry)
            self.telemetry.set_state("blocked", out.reason)
            self._sleep(float(self.cfg.blocked_retry))
        elif rotation:
            log.info("the server closed the stream (%s); reconnecting", out.reason)
        elif throttled:
            delay = self.pace.throttled(time.monotonic())
            log.info("throttled by the service (%s); reopening in %.2fs", out.reason, delay)
            self.telemetry.count("throttled")
            self._sleep(delay)
        else:
            delay = self._backoff.next_delay()
            log.warning("forwarding failed (%s): %s; retrying in %.2fs", f.phase, out.reason, delay)
            self.telemetry.set_state("backing_off", out.reason)
            self._sleep(delay, probe=self.reach.probe)

    def _session_or_isolate(self) -> None:
        try:
            self._session()
        except Failure as f:
            if not isinstance(f.outcome, RejectRecord):
                raise
            self._close_streams()
            isolate(self, f.outcome)  # its own failures, stop and pause reach _main's handlers

    def _wait_paused(self) -> None:
        self.telemetry.set_state("paused", "paused by an operator request")
        self.telemetry.set_inflight(0)
        while self._paused.is_set() and not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            self.spool.record_acks()
            self.telemetry.persist()

    def _sleep(self, seconds: float, probe: Callable[[], bool | None] | None = None) -> None:
        """Wait ``seconds`` (a stop, pause or retry request ends it). With ``probe`` (edge/forward/reach.py):
        an uplink that does not answer as the wait begins ends it as soon as it answers again."""
        deadline = time.monotonic() + seconds
        self._retry.clear()
        watch = probe is not None and seconds > 2 * TIMEOUT_S and probe() is False
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or self._retry.is_set() or self._paused.is_set():
                return
            self._wake.wait(min(left, 1.0))
            self._wake.clear()
            self._update_cut_backlog()
            self.telemetry.persist()
            if watch and deadline - time.monotonic() > TIMEOUT_S and probe():
                log.info("the uplink answers again: retrying now, not in %.1fs", deadline - time.monotonic())
                return

    def _record_error(self, phase: str, reason: str) -> None:
        reason = self._scrub(reason)
        log.warning("%s", reason)
        self.telemetry.error(phase, "Error", reason)

    def _update_cut_backlog(self, force: bool = False) -> None:
        if self.telemetry.cut is None or (not force and time.monotonic() - self.spool.backlog_ts < 1.0):
            return
        self.telemetry.cut_backlog(self.spool.backlog())

    # -------------------------------------------------------------- session

    def open_stream(self, signal: AckSignal):
        if self._stop.is_set():
            raise Stopped()
        if self._paused.is_set():
            raise Paused()
        link = self.sink.open(signal)
        self.telemetry.stream_opened()
        self._streams.append(link)
        return link

    def _close_streams(self) -> None:
        links, self._streams = self._streams, []
        close_all(links)

    def retire_stream(self, link) -> None:
        """A stream lost in a routine way (rotation, throttle): closed in the background, the session goes on."""
        if link in self._streams:
            self._streams.remove(link)
        link.close_in_background()

    def _session(self) -> None:
        """Open the streams and pump until a failure (raised) or stop (returns)."""
        self.telemetry.set_state("connecting", "")
        if self.spool.reader is None:
            from edge.spool import SpoolReader

            self.spool.reader = SpoolReader(self.spool_path)
        self._update_cut_backlog(force=True)
        t = self.telemetry
        t.acked_hi = max(t.acked_hi, int(self.spool.reader.watermark()))
        self.sink.reset()
        self._streams = []
        signal = self._signal = AckSignal()
        Pump(self, signal).run()

    def on_acked(self, count: int, last_seq: int, sent_at: float) -> None:
        self.spool.unrecorded.append(last_seq)
        self.spool.record_acks()
        self.rotation_ok = True
        if self.telemetry.acked(count, last_seq, time.monotonic() - sent_at):
            self._backoff.reset()
        self.telemetry.persist()

    def caught_up(self) -> None:
        self.telemetry.caught_up()
        self._backoff.reset()

    def wait_idle(self, signal: AckSignal, streams: list) -> None:
        """Caught up: sleep until notify() (new rows), stop, pause, or an error on an idle stream."""
        deadline = time.monotonic() + IDLE_POLL
        while not self._wake.is_set() and not any(s.acks.error is not None for s in streams):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.spool.record_acks()
            self.telemetry.persist()
            if self.spool.unrecorded:
                self.spool.wait_recorded(min(left, WAIT_SLICE))
            else:
                signal.wait_for(lambda: self._wake.is_set() or any(s.acks.error is not None for s in streams),
                                min(left, 1.0))
        self._wake.clear()
        self.spool.record_acks()
        self.telemetry.persist()
