"""MQTT collector: QoS 1, persistent session, PUBACK only after the spool commit.

The parts, one job each:

- ``session``: the broker connection (paho client, TLS, CONNACK, subscriptions),
  run by ``edge.sources.supervisor`` (reconnect, backoff, the state of every
  failure: ``auth_failed``, ``tls_error``, ``connect_failed``, ``subscribe_failed``);
- ``pipeline``: the worker and acker threads between paho and the spool (group
  commits; PUBACKs strictly in arrival order, only after the commit);
- ``convert``: messages -> readings and quarantines (``parse``, ``sparkplug``);
- this module: the ``Source`` that wires them, sends the acknowledgements on the
  connection that delivered, and shows the flow state (``blocked`` while the
  spool is full: nothing is acknowledged and the broker keeps the messages).
"""

from __future__ import annotations

import asyncio
import collections
import time

from edge.sources.context import SourceContext
from edge.sources.mqtt.config import Config
from edge.sources.mqtt.convert import Converter
from edge.sources.mqtt.pipeline import Msg, Pipeline, send_pubacks
from edge.sources.mqtt.session import Session, TlsFilesError
from edge.sources.states import State
from edge.sources.supervisor import Supervisor, tcp_probe


class Source:
    def __init__(self, cfg: Config, ctx: SourceContext):
        self.cfg = cfg
        self.ctx = ctx
        self.client_id = cfg.client_id or f"zerobus-edge-{ctx.appliance_id}-{cfg.name}"[:200]
        self.counts = collections.Counter()  # messages, acked, ...: one counter for the parts
        self.converter = Converter(cfg, ctx, self.counts)
        self.session = Session(self)
        self.pipeline = Pipeline(self)
        self._loop: asyncio.AbstractEventLoop | None = None

    def convert(self, msgs: list[Msg]) -> tuple[list[tuple[int, bytes]], list[tuple]]:
        """The pipeline's worker thread: see ``convert.Converter``."""
        return self.converter.convert(msgs)

    # ---- acknowledgements (the pipeline's acker thread)

    def ack(self, msgs: list[Msg]) -> None:
        session = self.session
        client, gen, up = session.client, session.gen, session.up
        mids = []
        stale = 0
        for m in msgs:
            if m.qos == 0:
                continue
            # A message delivered on an earlier connection is redelivered by the broker on this
            # one; acking its old id could hit a different message, so let the copy come again.
            if m.gen != gen or not up or client is None:
                stale += 1
                continue
            mids.append(m.mid)
        if mids:
            send_pubacks(client, mids)
        self.counts["acked"] += len(mids)
        self.counts["ack_skipped_reconnected"] += stale

    # ---- flow state shown to operators

    def set_blocked(self, detail: str) -> None:
        self.ctx.status.set_state(self.pipeline.blocked_state, detail)

    def set_flowing(self) -> None:
        if self.session.up:
            self.show_flow()

    def show_flow(self) -> None:
        """The state of a connected source: blocked, a refused subscription, or connected."""
        cfg = self.cfg
        if self.pipeline.blocked:
            self.ctx.status.set_state(self.pipeline.blocked_state, "connected; spool full: not acknowledging")
        elif self.session.refused:
            self.ctx.status.set_state(State.SUBSCRIBE_FAILED, f"broker refused subscription(s) {', '.join(self.session.refused)}")
        else:
            self.ctx.status.set_state(State.CONNECTED, f"{cfg.url} as {self.client_id} ({len(cfg.subscriptions)} subscriptions)")

    def wait_for_space(self, timeout: float) -> None:
        """From the worker thread: block until the spool has room (or ``timeout``)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            time.sleep(timeout)
            return
        try:
            asyncio.run_coroutine_threadsafe(self.ctx.wait_for_space(timeout), loop).result(timeout + 5)
        except Exception:  # noqa: BLE001 - the loop is stopping: wait a little and let the worker look again
            time.sleep(min(timeout, 1.0))

    # ---- lifecycle

    async def run(self) -> None:
        cfg = self.cfg
        self._loop = asyncio.get_running_loop()
        self.pipeline.start()
        supervisor = Supervisor(
            self.session, self.ctx.status, initial=cfg.reconnect_initial, cap=cfg.reconnect_max,
            target=f"{cfg.url} as {self.client_id}", healthy_after=30.0, log=self.ctx.log,
            probe=tcp_probe(self.session.host, self.session.port),  # a broker back ends the backoff early
        )
        try:
            await supervisor.run()
        finally:
            await asyncio.to_thread(self._shutdown)

    def _shutdown(self) -> None:
        pipeline = self.pipeline
        # Give in-flight commits a moment so their PUBACKs still go out; anything left is redelivered.
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and pipeline.window and not pipeline.blocked:
            time.sleep(0.02)
        pipeline.stop(2.0)
        self.session.shutdown()

    def stats(self) -> dict:
        out = dict(self.counts)
        out.update(self.pipeline.counts)
        out["window_groups"] = len(self.pipeline.window)
        return out


__all__ = ["Config", "Source", "TlsFilesError", "send_pubacks"]
