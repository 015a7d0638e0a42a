"""MQTT collector: QoS 1, persistent session, PUBACK only after the spool commit.

Threads and the one rule
------------------------
paho's network thread only queues each message (``_on_message``). A worker
thread (``_Pipeline``) takes what arrived, parses it (``parse`` /
``sparkplug``), and hands the whole group to the spool in ONE ``ctx.submit``
(group commit) plus one ``ctx.quarantine`` per unparseable payload. When all
futures of a group resolved, its message ids are acknowledged, strictly in
arrival order (MQTT 4.6.0-2). Nothing is acknowledged before its commit, so a
crash anywhere leaves the message with the broker, which redelivers it: at
least once, duplicates bounded by the in-flight window.

While the spool is full (``SpoolFull`` under ``when_full: block``) the worker
stops taking messages and nothing is acknowledged; the broker's in-flight
window (Receive Maximum / ``max_inflight_messages``) fills and the broker keeps
the rest queued for our session. When space returns, the refused groups are
resubmitted in order and the flow resumes.

The connection is supervised here (not by paho's auto-reconnect) so every
failure has a reason in the source state: ``auth_failed``, ``tls_error``,
``connect_failed``..., with a capped, jittered backoff between attempts.
"""

from __future__ import annotations

import asyncio
import collections
import json
import queue
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge.backoff import Backoff
from edge.encode import encode_reading
from edge.fsutil import write_atomic
from edge.sources.mqtt.config import Config, parse_url
from edge.sources.context import SourceContext
from edge.sources.status import now_us
from edge.sources.mqtt.client import Client as BurstClient
from edge.sources.mqtt.parse import Mapper, ParseError, Router
from edge.sources.mqtt.sparkplug import Decoder

# CONNACK reason codes that mean "your credentials or identity": retrying fast will not help.
_AUTH_CODES = {134, 135, 133, 138, 140}  # bad user/password, not authorized, client id rejected, banned, bad auth method


class _Msg:
    __slots__ = ("gen", "mid", "qos", "topic", "payload", "dup", "ts")

    def __init__(self, gen: int, mid: int, qos: int, topic: bytes, payload: bytes, dup: bool, ts: int):
        self.gen, self.mid, self.qos, self.topic, self.payload, self.dup, self.ts = gen, mid, qos, topic, payload, dup, ts


class _Group:
    """Messages committed together; acknowledged together once every future resolved."""

    __slots__ = ("msgs", "jobs", "pending", "failed", "done")

    def __init__(self, msgs: list[_Msg]):
        self.msgs = msgs
        self.jobs: list[tuple[str, tuple]] = []  # ("submit", (items,)) / ("quarantine", (src, reason, raw, meta))
        self.pending = 0
        self.failed: list[tuple[tuple[str, tuple], BaseException]] = []
        self.done = False


class _Pipeline:
    """The worker thread between paho and the spool (see the module docstring)."""

    def __init__(self, src: "Source"):
        self.src = src
        self.cfg = src.cfg
        self.ctx = src.ctx
        self.inbox: queue.SimpleQueue[_Msg | None] = queue.SimpleQueue()
        self.window: collections.deque[_Group] = collections.deque()
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = False
        self.blocked = False
        self.thread = threading.Thread(target=self._run, name=f"mqtt-worker-{self.cfg.name}", daemon=True)
        # PUBACKs go out from their own thread: the spool writer thread that resolves the
        # futures is shared by every source and must not spend its time on socket writes.
        self.ack_needed = threading.Event()
        self.acker = threading.Thread(target=self._ack_loop, name=f"mqtt-acker-{self.cfg.name}", daemon=True)
        self.counts = collections.Counter()

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

    def _take(self) -> list[_Msg]:
        try:
            first = self.inbox.get(timeout=0.5)
        except queue.Empty:
            return []
        if first is None:
            return []
        limit = self.cfg.batch_max
        # Sleep through the group window rather than waking up for every message that
        # arrives in it: one wake-up per group instead of one per message.
        if self.cfg.batch_delay and self.inbox.qsize() < limit:
            time.sleep(self.cfg.batch_delay)
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

    def _dispatch(self, msgs: list[_Msg]) -> None:
        group = _Group(msgs)
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

    def _start_jobs(self, group: _Group, jobs: list[tuple[str, tuple]]) -> None:
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

    def _job_done(self, group: _Group, job: tuple[str, tuple], exc: BaseException | None) -> None:
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
        acks: list[_Msg] = []
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


class Source:
    def __init__(self, cfg: Config, ctx: SourceContext):
        self.cfg = cfg
        self.ctx = ctx
        self.tls, self.host, self.port = parse_url(cfg.url)
        self.client_id = cfg.client_id or f"zerobus-edge-{ctx.appliance_id}-{cfg.name}"[:200]
        self.router = Router(cfg.subscriptions)
        self._alias_path = Path(ctx.data_dir) / "sparkplug-aliases.json"
        self._subs_path = Path(ctx.data_dir) / "mqtt-subscriptions.json"
        self.decoder = Decoder(self._load_json(self._alias_path))
        self._gen = 0  # connection generation: acks are only valid on the connection that delivered
        self._up = False
        self._client: mqtt.Client | None = None
        self._pipeline: _Pipeline | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._disconnected: asyncio.Event | None = None
        self._last_connack: tuple[int, str] | None = None
        self._last_disconnect = ""
        self._last_problem = ""
        self._state = "starting"
        self._q_logged_at = 0.0
        self._q_unlogged = 0
        self.counts = collections.Counter()

    # ---- conversion (worker thread)

    def convert(self, msgs: list[_Msg]) -> tuple[list[tuple[int, bytes]], list[tuple]]:
        cfg = self.cfg
        items: list[tuple[int, bytes]] = []
        quarantines: list[tuple] = []
        name = cfg.name
        n_readings = 0
        for m in msgs:
            try:
                topic = m.topic.decode("utf-8")
            except UnicodeDecodeError:
                quarantines.append(self._quarantine(m, repr(m.topic[:200]), "topic is not valid UTF-8"))
                continue
            if len(m.payload) > cfg.max_payload_bytes:
                quarantines.append(self._quarantine(
                    m, topic, f"payload of {len(m.payload)} bytes exceeds max_payload_bytes ({cfg.max_payload_bytes})"))
                continue
            mapper = self.router.route(topic)
            if mapper is None:
                quarantines.append(self._quarantine(m, topic, "no subscription mapping matches this topic"))
                continue
            try:
                parsed = self._parse(mapper, topic, m.payload)
            except ParseError as exc:
                quarantines.append(self._quarantine(m, topic, str(exc)))
                continue
            except Exception as exc:  # a parser bug: keep the payload, keep going
                quarantines.append(self._quarantine(m, topic, f"internal parse error {type(exc).__name__}: {exc}"))
                continue
            try:
                bodies = [
                    (m.ts, encode_reading(
                        source=name, protocol="mqtt", point=p.point, value=p.value, quality=p.quality,
                        status_code=p.status_code, source_ts=p.source_ts, collected_ts=m.ts,
                        unit=p.unit, data_type=p.data_type,
                    ))
                    for p in parsed
                ]
            except Exception as exc:  # all of a message or none of it: the quarantine keeps it whole
                quarantines.append(self._quarantine(m, topic, f"cannot encode a reading: {type(exc).__name__}: {exc}"))
                continue
            items.extend(bodies)
            n_readings += len(bodies)
        self.counts["messages"] += len(msgs)
        self.counts["duplicates_flagged"] += sum(1 for m in msgs if m.dup)
        if n_readings:
            self.ctx.status.readings(n_readings)
        if quarantines:
            self.ctx.status.quarantined(len(quarantines))
        self.ctx.status.update(messages_total=self.counts["messages"], redelivered_total=self.counts["duplicates_flagged"])
        return items, quarantines

    def _parse(self, mapper: Mapper, topic: str, payload: bytes):
        if mapper.format != "sparkplug":
            return mapper.parse(topic, payload)
        parsed, changed = self.decoder.parse(topic, payload)
        if changed:
            # Saved before the BIRTH can be acknowledged: after a restart the broker will
            # not send it again, and DATA messages name metrics only by alias.
            self._save_json(self._alias_path, self.decoder.snapshot())
        return parsed

    def _quarantine(self, m: _Msg, topic: str, reason: str) -> tuple:
        limit = int(self.cfg.quarantine_max_bytes)
        meta = {
            "topic": topic[:1024], "qos": m.qos, "bytes": len(m.payload), "truncated": len(m.payload) > limit,
            "received_ts": m.ts, "dup": m.dup,
        }
        # A device sending garbage at 1 kHz must not flood the log: one line per second at most.
        now = time.monotonic()
        self._q_unlogged += 1
        if now - self._q_logged_at >= 1.0:
            more = f" (+{self._q_unlogged - 1} more since the last line)" if self._q_unlogged > 1 else ""
            self.ctx.log.warning("quarantined MQTT message on %s: %s%s", topic[:200], reason, more)
            self._q_logged_at, self._q_unlogged = now, 0
        return (self.cfg.name, reason, bytes(m.payload[:limit]), meta)

    # ---- acknowledgements (the pipeline's acker thread)

    def ack(self, msgs: list[_Msg]) -> None:
        client = self._client
        gen = self._gen
        mids = []
        stale = 0
        for m in msgs:
            if m.qos == 0:
                continue
            # A message delivered on an earlier connection is redelivered by the broker on this
            # one; acking its old id could hit a different message, so let the copy come again.
            if m.gen != gen or not self._up or client is None:
                stale += 1
                continue
            mids.append(m.mid)
        if mids:
            send_pubacks(client, mids)
        self.counts["acked"] += len(mids)
        self.counts["ack_skipped_reconnected"] += stale

    # ---- flow state shown to operators

    def set_blocked(self, detail: str) -> None:
        self._state = "blocked"
        self.ctx.status.set_state("blocked", detail)

    def set_flowing(self) -> None:
        if self._up:
            self._set_connected()

    def wait_for_space(self, timeout: float) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            time.sleep(timeout)
            return
        try:
            asyncio.run_coroutine_threadsafe(self.ctx.wait_for_space(timeout), loop).result(timeout + 5)
        except Exception:
            time.sleep(min(timeout, 1.0))

    def _set_connected(self) -> None:
        self._state = "connected"
        self.ctx.status.set_state("connected", f"{self.cfg.url} as {self.client_id} ({len(self.cfg.subscriptions)} subscriptions)")

    # ---- paho callbacks (paho's thread: keep them short)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        code = int(reason_code.value) if hasattr(reason_code, "value") else int(reason_code)
        self._last_connack = (code, str(reason_code))
        if reason_code.is_failure:
            return
        self._gen += 1
        self._up = True
        if self._pipeline is not None and self._pipeline.blocked:
            self.ctx.status.set_state("blocked", "connected; spool full: not acknowledging")
        else:
            self._set_connected()
        self._subscribe(client, bool(flags.session_present))

    def _subscribe(self, client: mqtt.Client, session_present: bool) -> None:
        wanted = sorted({(s.topic, s.qos) for s in self.cfg.subscriptions})
        # The broker still has our subscriptions when the session survived; subscribing again
        # would make it resend every retained message (duplicates on every reconnect).
        saved = self._load_json(self._subs_path)
        if session_present and saved == {"subs": [list(w) for w in wanted]}:
            return
        # Filters dropped from the config would otherwise keep delivering into the old session.
        old = {t for t, _ in (saved or {}).get("subs", [])} if isinstance(saved, dict) else set()
        dropped = sorted(old - {t for t, _ in wanted})
        if session_present and dropped:
            client.unsubscribe(dropped)
        if self.cfg.protocol == "5":
            topics = [(t, SubscribeOptions(qos=q, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)) for t, q in wanted]
        else:
            topics = [(t, q) for t, q in wanted]
        result, _mid = client.subscribe(topics)
        if result != mqtt.MQTT_ERR_SUCCESS:
            self.ctx.status.error(f"subscribe failed: {mqtt.error_string(result)}")
            return
        self._pending_subs = wanted

    def _on_subscribe(self, client, userdata, mid, reason_code_list, properties) -> None:
        wanted = getattr(self, "_pending_subs", [])
        refused = [w[0] for w, rc in zip(wanted, reason_code_list) if rc.is_failure]
        if refused:
            msg = f"broker refused subscription(s) {', '.join(refused)} (check the broker ACL for user {self.cfg.username!r})"
            self.ctx.status.error(msg)
            self.ctx.status.set_state("subscribe_failed", msg)
            return
        # Written only after the SUBACK: a crash before leaves the file old, so we subscribe again.
        self._save_json(self._subs_path, {"subs": [list(w) for w in wanted]})

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._up = False
        # paho reports a dropped TCP connection as "Unspecified error".
        self._last_disconnect = "connection lost" if getattr(reason_code, "value", 0) == 128 else str(reason_code)
        loop, ev = self._loop, self._disconnected
        if loop is not None and ev is not None and not loop.is_closed():
            loop.call_soon_threadsafe(ev.set)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        # msg._topic is the raw bytes: msg.topic would raise on a non-UTF-8 topic inside paho's thread.
        self._pipeline.inbox.put(_Msg(self._gen, msg.mid, msg.qos, msg._topic, msg.payload, msg.dup, now_us()))

    # ---- connection management

    def _new_client(self) -> mqtt.Client:
        cfg = self.cfg
        v5 = cfg.protocol == "5"
        client = BurstClient(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=None if v5 else False,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            reconnect_on_failure=False,
            manual_ack=True,
        )
        client.connect_timeout = float(cfg.connect_timeout)
        if cfg.username:
            client.username_pw_set(cfg.username, str(cfg.password) or None)
        if self.tls:
            client.tls_set_context(self._tls_context())
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def _tls_context(self) -> ssl.SSLContext:
        cfg = self.cfg
        try:
            ctx = ssl.create_default_context(cafile=cfg.ca_file) if cfg.ca_file else ssl.create_default_context()
        except (OSError, ssl.SSLError) as exc:
            raise TlsFilesError(f"cannot load ca_file {cfg.ca_file}: {_oserror(exc)}") from None
        ctx.check_hostname = True  # never off: a broker must prove its name
        ctx.verify_mode = ssl.CERT_REQUIRED
        if cfg.cert_file:
            try:
                ctx.load_cert_chain(cfg.cert_file, cfg.key_file, password=str(cfg.key_password) or None)
            except (OSError, ssl.SSLError) as exc:
                raise TlsFilesError(
                    f"cannot load cert_file {cfg.cert_file} / key_file {cfg.key_file}: {_oserror(exc)}") from None
        return ctx

    def _connect_props(self) -> Properties | None:
        if self.cfg.protocol != "5":
            return None
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = int(self.cfg.session_expiry)
        props.ReceiveMaximum = int(self.cfg.max_inflight)
        return props

    async def run(self) -> None:
        cfg, ctx = self.cfg, self.ctx
        self._loop = asyncio.get_running_loop()
        self._disconnected = asyncio.Event()
        self._pipeline = _Pipeline(self)
        self._pipeline.start()
        backoff = Backoff(initial=float(cfg.reconnect_initial), cap=float(cfg.reconnect_max))
        try:
            while True:
                try:
                    client = self._client = self._new_client()
                    break
                except TlsFilesError as exc:  # fix the files: retried without restarting the appliance
                    self._fail("tls_error", str(exc))
                    await asyncio.sleep(float(cfg.auth_backoff))
            while True:
                self._disconnected.clear()
                self._last_connack = None
                last = f" (last attempt: {self._last_problem})" if self._last_problem else ""
                ctx.status.set_state("connecting", f"{cfg.url} as {self.client_id}{last}")
                started = time.monotonic()
                try:
                    if cfg.protocol == "5":
                        await asyncio.to_thread(
                            client.connect, self.host, self.port, int(cfg.keepalive),
                            clean_start=False, properties=self._connect_props(),
                        )
                    else:  # 3.1.1: the persistent session comes from clean_session=False
                        await asyncio.to_thread(client.connect, self.host, self.port, int(cfg.keepalive))
                except ssl.SSLError as exc:
                    why = getattr(exc, "verify_message", None) or exc.reason or str(exc)
                    hint = f" (ca_file: {cfg.ca_file or 'system CAs'})" if isinstance(exc, ssl.SSLCertVerificationError) else ""
                    self._fail("tls_error", f"TLS handshake with {self.host}:{self.port} failed: {why}{hint}")
                    await asyncio.sleep(backoff.next_delay())
                    continue
                except (OSError, ValueError) as exc:
                    self._fail("connect_failed", f"cannot reach {self.host}:{self.port}: {_oserror(exc)}")
                    await asyncio.sleep(backoff.next_delay())
                    continue
                client.loop_start()
                # Cancellation propagates from here with paho's thread still running, so that
                # _shutdown can let the last commits' PUBACKs out before disconnecting.
                await self._disconnected.wait()
                # Joins paho's thread; from here on no callback runs until the next connect.
                await asyncio.to_thread(client.loop_stop)
                self._up = False
                connack = self._last_connack
                if connack is not None and connack[0] >= 128:
                    if connack[0] in _AUTH_CODES:
                        self._fail("auth_failed", f"broker refused the credentials of user {cfg.username!r}: {connack[1]}")
                        await asyncio.sleep(float(cfg.auth_backoff))
                    else:
                        self._fail("connect_failed", f"broker refused the connection: {connack[1]}")
                        await asyncio.sleep(backoff.next_delay())
                    continue
                if connack is None:
                    self._fail("connect_failed", f"connection closed before CONNACK: {self._last_disconnect}")
                else:
                    self._fail("connecting", f"disconnected: {self._last_disconnect}; reconnecting")
                if time.monotonic() - started > 30:
                    backoff.reset()
                await asyncio.sleep(backoff.next_delay())
        finally:
            await asyncio.to_thread(self._shutdown)

    def _fail(self, state: str, detail: str) -> None:
        repeated = detail == self._last_problem
        self._state = state
        self._last_problem = detail
        if not repeated:  # one line per new problem, not one per reconnect attempt
            self.ctx.log.warning("mqtt source %s: %s: %s", self.cfg.name, state, detail)
        if state != "connecting" and not repeated:
            self.ctx.status.error(detail)
        self.ctx.status.set_state(state, detail)

    def _shutdown(self) -> None:
        pipeline, client = self._pipeline, self._client
        if pipeline is not None:
            # Give in-flight commits a moment so their PUBACKs still go out; anything left is redelivered.
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline and pipeline.window and not pipeline.blocked:
                time.sleep(0.02)
            pipeline.stop(2.0)
        self._up = False  # late commits no longer ack: those messages are redelivered (a duplicate, not a loss)
        if client is not None:
            try:
                client.disconnect()
                client.loop_stop()
            except Exception:
                pass

    # ---- small files in the source's data dir

    @staticmethod
    def _load_json(path: Path) -> Any:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    @staticmethod
    def _save_json(path: Path, obj: Any) -> None:
        write_atomic(path, json.dumps(obj, separators=(",", ":")).encode())

    def stats(self) -> dict:
        out = dict(self.counts)
        if self._pipeline is not None:
            out.update(self._pipeline.counts)
            out["window_groups"] = len(self._pipeline.window)
        return out


class TlsFilesError(Exception):
    """ca_file / cert_file / key_file cannot be read or do not fit together."""


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


def _oserror(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
