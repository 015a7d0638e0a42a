"""The seam between the forwarder and the cloud: a Sink opens Streams; the ZeroBus SDK is one.

A ``Stream`` takes one bounded batch of framed records and returns its offset; acks and
the first error arrive through the SDK's callback into our own ``AckSignal``, shared by
every stream of a session, so the loop waits on one condition for any stream.
``wait_for_offset`` in SDK 1.10 ignores its timeout and cannot be interrupted: every wait
here is ours, sliced and bounded.

SDK recovery is OFF (``recovery=False``): every failure surfaces at the next ingest or
wait and the forwarder resends from the spool (see edge/forward/loop.py). ``failure()``
finds the real cause of a failed stream: an ingest call on a failed stream raises a plain
"Stream is closed" that hides it, ``flush()`` raises the original, typed exception.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Protocol

from edge.outcome import Outcome, classify

CLOSE_TIMEOUT = 2.0


class Failure(Exception):
    """One classified failure, carried out of the pump to the retry loop."""

    def __init__(self, outcome: Outcome, phase: str, stream: int | None = None):
        super().__init__(outcome.reason)
        self.outcome = outcome
        self.phase = phase
        self.stream = stream


class AckSignal:
    """One condition for all the streams of a session: an ack or an error on any of them wakes the loop."""

    def __init__(self) -> None:
        self.cond = threading.Condition()

    def wait_for(self, pred: Callable[[], bool], timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(pred, max(0.0, timeout))

    def kick(self) -> None:
        """Wake a waiter to look at something else (new rows, stop, pause)."""
        with self.cond:
            self.cond.notify_all()


class Acks:
    """Highest offset acked and the first error of one stream, pushed by the SDK's callback."""

    def __init__(self, signal: AckSignal) -> None:
        self._signal = signal
        self.acked = -1
        self.error: str | None = None

    def on_ack(self, offset: int) -> None:
        with self._signal.cond:
            if offset > self.acked:
                self.acked = offset
            self._signal.cond.notify_all()

    def on_error(self, offset: int, message: str) -> None:
        with self._signal.cond:
            if self.error is None:
                self.error = str(message)
            self._signal.cond.notify_all()


class Stream(Protocol):
    acks: Acks

    def ingest(self, records: list[bytes]) -> int: ...

    def failure(self, exc: BaseException | None, phase: str) -> Failure: ...

    def close_in_background(self) -> threading.Thread: ...


class Sink(Protocol):
    def reset(self) -> None: ...

    def open(self, signal: AckSignal) -> Stream: ...


def _make_callback(acks: Acks):
    from zerobus.sdk.shared import AckCallback

    class _Callback(AckCallback):
        def on_ack(self, offset: int) -> None:
            acks.on_ack(offset)

        def on_error(self, offset: int, error_message: str) -> None:
            acks.on_error(offset, error_message)

    return _Callback()


def default_sdk_factory(cfg):
    from zerobus.sdk.sync import ZerobusSdk

    return ZerobusSdk(cfg.endpoint, cfg.workspace_url, application_name=cfg.application_name)


class SdkStream:
    """One SDK stream and its ack tracker."""

    def __init__(self, stream: Any, acks: Acks, classified: Callable[[BaseException, str], Failure]):
        self.stream = stream
        self.acks = acks
        self._classified = classified

    def ingest(self, records: list[bytes]) -> int:
        """The offset of this batch; a classified Failure if the stream refused it."""
        try:
            return self.stream.ingest_records_offset(records)
        except Exception as exc:
            raise self.failure(exc, "ingest") from None

    def failure(self, exc: BaseException | None, phase: str) -> Failure:
        """The real cause of this stream's failure (see the module docstring)."""
        if exc is not None:
            self.acks._signal.wait_for(lambda: self.acks.error is not None, 1.0)
        error = self.acks.error
        if error is not None or exc is None:
            flushed = bounded_call(self.stream.flush, 2.0)
            if isinstance(flushed, BaseException):
                return self._classified(flushed, phase)
            if error is not None:
                return self._classified(Exception(error), phase)
        return self._classified(exc if exc is not None else Exception("stream failed"), phase)

    def close_in_background(self) -> threading.Thread:
        """close() waits for in-flight acks, which a dead server never sends: never on the loop's thread."""

        def run():
            try:
                self.stream.close()
            except Exception:  # noqa: S110 - the stream is being dropped; its error was already classified
                pass

        t = threading.Thread(target=run, name="zerobus-close", daemon=True)
        t.start()
        return t


class ZerobusSink:
    """Streams of the official SDK, one SDK instance per session (a fresh token after a refusal)."""

    def __init__(self, cfg: Any, scrub: Callable[[str], str], sdk_factory: Callable[[Any], Any] | None = None):
        self.cfg = cfg
        self._scrub = scrub
        self._factory = sdk_factory or default_sdk_factory
        self._sdk: Any = None

    def reset(self) -> None:
        self._sdk = None

    def _options(self, acks: Acks):
        from zerobus.sdk.shared import StreamConfigurationOptions

        ack_ms = max(1000, int(float(self.cfg.ack_timeout) * 1000))
        return StreamConfigurationOptions(
            # It counts calls (batches); ours never exceed max_inflight_batches per stream.
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

    def open(self, signal: AckSignal) -> SdkStream:
        from zerobus.sdk.shared import TableProperties

        from edge.pb.reading_pb2 import Reading

        if self._sdk is None:
            self._sdk = self._factory(self.cfg)
        acks = Acks(signal)
        try:
            stream = self._sdk.create_stream(
                client_id=self.cfg.client_id,
                client_secret=str(self.cfg.client_secret),
                table_properties=TableProperties(self.cfg.table, Reading.DESCRIPTOR),
                options=self._options(acks),
            )
        except Exception as exc:
            raise self.classified(exc, "create") from None
        return SdkStream(stream, acks, self.classified)

    def classified(self, exc: BaseException, phase: str) -> Failure:
        from zerobus.sdk.shared import NonRetriableException

        text = self._scrub(f"{exc}") or type(exc).__name__
        return Failure(classify(text, nonretriable=isinstance(exc, NonRetriableException), phase=phase), phase)


def close_all(streams: list) -> None:
    """Close streams in parallel, waiting at most CLOSE_TIMEOUT in all."""
    threads = [s.close_in_background() for s in streams]
    deadline = time.monotonic() + CLOSE_TIMEOUT
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))


def bounded_call(fn: Callable[[], Any], timeout: float) -> Any:
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
